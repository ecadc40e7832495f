import ShmSystem
@_spi(ShmInternals) import ShmPrimitives

/// A robust process-shared mutex in a named segment (kind `MUTX`).
public final class SharedMutex: Sendable {
    public static let kind = SegmentKind("MUTX")
    public let segment: any Segment
    public let mutex: RobustMutex

    public static func create(_ name: String, mode: FileMode = 0o600,
                              lifetime: SharedMemorySegment.Lifetime = .removedWithCreator) throws -> SharedMutex {
        let segment = try createStructureSegment(name, dataSize: RobustMutex.size, kind: kind, mode: mode, lifetime: lifetime) { data in
            _ = try RobustMutex.initialize(data)
        }
        return try SharedMutex(segment: segment)
    }

    public static func open(_ name: String, timeout: Duration = .seconds(2)) throws -> SharedMutex {
        try SharedMutex(segment: SharedMemorySegment.open(name, kind: kind, timeout: timeout))
    }

    public init(segment: any Segment) throws {
        self.segment = segment
        self.mutex = try RobustMutex(attaching: segment.data, anchor: segment)
    }
}
