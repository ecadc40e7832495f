import ShmSystem
@_spi(ShmInternals) import ShmPrimitives

/// A counting semaphore in a named segment (kind `SEMA`).
public final class SharedSemaphore: Sendable {
    public static let kind = SegmentKind("SEMA")
    public let segment: any Segment
    public let semaphore: FutexSemaphore

    public static func create(_ name: String, initialValue: UInt32 = 0, mode: FileMode = 0o600,
                              lifetime: SharedMemorySegment.Lifetime = .removedWithCreator) throws -> SharedSemaphore {
        let segment = try createStructureSegment(name, dataSize: FutexSemaphore.size, kind: kind, mode: mode, lifetime: lifetime) { data in
            _ = try FutexSemaphore.initialize(data, initialValue: initialValue)
        }
        return try SharedSemaphore(segment: segment)
    }

    public static func open(_ name: String, timeout: Duration = .seconds(2)) throws -> SharedSemaphore {
        try SharedSemaphore(segment: SharedMemorySegment.open(name, kind: kind, timeout: timeout))
    }

    public init(segment: any Segment) throws {
        self.segment = segment
        self.semaphore = try FutexSemaphore(attaching: segment.data, anchor: segment)
    }
}
