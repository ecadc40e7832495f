import ShmSystem

/// Where a record is: its segment and its byte offset in the segment file.
public struct LogPosition: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var segment: UInt32
    public var offset: UInt32

    public init(segment: UInt32, offset: UInt32) {
        self.segment = segment
        self.offset = offset
    }

    init(packed: UInt64) {
        segment = UInt32(truncatingIfNeeded: packed >> 32)
        offset = UInt32(truncatingIfNeeded: packed)
    }

    var packed: UInt64 { UInt64(segment) << 32 | UInt64(offset) }

    public static func < (a: LogPosition, b: LogPosition) -> Bool { a.packed < b.packed }
    public var description: String { "\(segment):\(offset)" }
}
