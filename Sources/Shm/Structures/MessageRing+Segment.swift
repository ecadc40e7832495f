import ShmSystem
@_spi(ShmInternals) import ShmPrimitives

/// A ring in its own named shared-memory segment (kind `RING`): the easy way
/// to stream bytes from one process to another.
///
/// ```swift
/// // process A
/// let ring = try MessageRing.create("telemetry", capacity: 1 << 20)
/// let producer = try ring.producer()
/// try producer.send(bytes)
/// // process B
/// let consumer = try MessageRing.open("telemetry").consumer()
/// let message = try consumer.receive(timeout: .seconds(1))
/// ```
extension MessageRing {
    /// The segment kind of a named ring (`SharedMemorySegment` header).
    public static let kind = SegmentKind("RING")

    /// Creates the segment `name` (`shm_open(O_CREAT|O_EXCL)` + `ftruncate`,
    /// laid out before anyone can open it) with a ring of `capacity` data
    /// bytes, a power of two.
    ///
    /// - Throws: `SegmentError` (name taken, /dev/shm full, …) or
    ///   `QueueError.invalidConfiguration` for a bad capacity or message size.
    public static func create(
        _ name: String, capacity: Int, maxMessageSize: Int? = nil, mode: FileMode = 0o600,
        lifetime: SharedMemorySegment.Lifetime = .removedWithCreator
    ) throws -> MessageRing {
        let segment = try createStructureSegment(name, dataSize: requiredSize(capacity: capacity), kind: kind,
                                                 mode: mode, lifetime: lifetime) { data in
            _ = try MessageRing.initialize(data, capacity: capacity, maxMessageSize: maxMessageSize)
        }
        return try MessageRing(segment: segment)
    }

    /// Opens the ring in segment `name`, waiting up to `timeout` for its
    /// creator to finish laying it out.
    public static func open(_ name: String, timeout: Duration = .seconds(2)) throws -> MessageRing {
        try MessageRing(segment: SharedMemorySegment.open(name, kind: kind, timeout: timeout))
    }

    /// Attaches to a ring laid out in the data area of any segment (POSIX,
    /// memfd, System V); the ring keeps the segment mapped.
    public convenience init(segment: any Segment) throws {
        try self.init(attaching: segment.data, anchor: segment)
    }

    /// The segment this ring lives in, when it was opened through one.
    public var segment: (any Segment)? { anchor as? any Segment }
}
