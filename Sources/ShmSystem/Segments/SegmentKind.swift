/// What structure a segment holds: a four-character code stored in the
/// header, so opening a ring as a log (or any mix-up) is a typed error.
public struct SegmentKind: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt32

    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// A kind from four ASCII characters, e.g. `SegmentKind("RING")`.
    public init(_ code: StaticString) {
        precondition(code.utf8CodeUnitCount == 4, "a segment kind is four ASCII characters")
        var value: UInt32 = 0
        let bytes = UnsafeBufferPointer(start: code.utf8Start, count: 4)
        for (i, byte) in bytes.enumerated() { value |= UInt32(byte) << (8 * UInt32(i)) }
        self.rawValue = value
    }

    /// Plain bytes for the application; no structure imposed.
    public static let raw = SegmentKind("RAW_")

    public var description: String {
        let bytes = (0..<4).map { UInt8(truncatingIfNeeded: rawValue >> (8 * $0)) }
        if bytes.allSatisfy({ $0 >= 0x20 && $0 < 0x7f }) {
            return String(decoding: bytes, as: UTF8.self)
        }
        return "0x" + String(rawValue, radix: 16)
    }
}
