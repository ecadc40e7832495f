import ShmSystem
@_spi(ShmInternals) import ShmPrimitives

/// An event (notification word) in a named segment (kind `EVNT`).
public final class SharedEvent: Sendable {
    public static let kind = SegmentKind("EVNT")
    public let segment: any Segment
    public let event: FutexEvent

    public static func create(_ name: String, mode: FileMode = 0o600,
                              lifetime: SharedMemorySegment.Lifetime = .removedWithCreator) throws -> SharedEvent {
        let segment = try createStructureSegment(name, dataSize: FutexEvent.size, kind: kind, mode: mode, lifetime: lifetime) { data in
            _ = try FutexEvent.initialize(data)
        }
        return try SharedEvent(segment: segment)
    }

    public static func open(_ name: String, timeout: Duration = .seconds(2)) throws -> SharedEvent {
        try SharedEvent(segment: SharedMemorySegment.open(name, kind: kind, timeout: timeout))
    }

    public init(segment: any Segment) throws {
        self.segment = segment
        self.event = try FutexEvent(attaching: segment.data, anchor: segment)
    }
}
