import ShmSystem
@_spi(ShmInternals) import ShmPrimitives

/// A counting semaphore in its own named shared-memory segment (kind `SEMA`).
extension SharedSemaphore {
    /// The segment kind of a named semaphore (`SharedMemorySegment` header).
    public static let kind = SegmentKind("SEMA")

    /// Creates the segment `name` holding a new semaphore.
    ///
    /// - Throws: `SegmentError` (name taken, /dev/shm full, …).
    public static func create(_ name: String, initialValue: UInt32 = 0, mode: FileMode = 0o600,
                              lifetime: SharedMemorySegment.Lifetime = .removedWithCreator,
                              waitStrategy: WaitStrategy = .default) throws -> SharedSemaphore {
        let segment = try createStructureSegment(name, dataSize: size, kind: kind, mode: mode, lifetime: lifetime) { data in
            _ = try SharedSemaphore.initialize(data, initialValue: initialValue)
        }
        return try SharedSemaphore(segment: segment, waitStrategy: waitStrategy)
    }

    /// Opens the semaphore in segment `name`.
    public static func open(_ name: String, timeout: Duration = .seconds(2),
                            waitStrategy: WaitStrategy = .default) throws -> SharedSemaphore {
        try SharedSemaphore(segment: SharedMemorySegment.open(name, kind: kind, timeout: timeout), waitStrategy: waitStrategy)
    }

    /// Attaches to a semaphore laid out in the data area of any segment.
    public convenience init(segment: any Segment, waitStrategy: WaitStrategy = .default) throws {
        try self.init(attaching: segment.data, anchor: segment, waitStrategy: waitStrategy)
    }

    /// The segment this semaphore lives in, when it was opened through one.
    public var segment: (any Segment)? { anchor as? any Segment }
}
