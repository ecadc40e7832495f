import ShmSystem
@_spi(ShmInternals) import ShmPrimitives

/// A queue in its own named shared-memory segment (kind `MPMC`).
extension MessageQueue {
    /// The segment kind of a named queue (`SharedMemorySegment` header).
    public static let kind = SegmentKind("MPMC")

    /// Creates the segment `name` with `capacity` slots (a power of two) of
    /// `slotSize` bytes each.
    ///
    /// - Throws: `SegmentError` (name taken, /dev/shm full, …) or
    ///   `QueueError.invalidConfiguration` for a bad capacity or slot size.
    public static func create(
        _ name: String, capacity: Int, slotSize: Int, mode: FileMode = 0o600,
        lifetime: SharedMemorySegment.Lifetime = .removedWithCreator,
        waitStrategy: WaitStrategy = .default
    ) throws -> MessageQueue {
        let segment = try createStructureSegment(name, dataSize: requiredSize(capacity: capacity, slotSize: slotSize),
                                                 kind: kind, mode: mode, lifetime: lifetime) { data in
            _ = try MessageQueue.initialize(data, capacity: capacity, slotSize: slotSize)
        }
        return try MessageQueue(segment: segment, waitStrategy: waitStrategy)
    }

    /// Opens the queue in segment `name`.
    public static func open(_ name: String, timeout: Duration = .seconds(2),
                            waitStrategy: WaitStrategy = .default) throws -> MessageQueue {
        try MessageQueue(segment: SharedMemorySegment.open(name, kind: kind, timeout: timeout), waitStrategy: waitStrategy)
    }

    /// Attaches to a queue laid out in the data area of any segment.
    public convenience init(segment: any Segment, waitStrategy: WaitStrategy = .default) throws {
        try self.init(attaching: segment.data, anchor: segment, waitStrategy: waitStrategy)
    }

    /// The segment this queue lives in, when it was opened through one.
    public var segment: (any Segment)? { anchor as? any Segment }
}
