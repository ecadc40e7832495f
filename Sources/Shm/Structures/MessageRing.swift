import ShmSystem
@_spi(ShmInternals) import ShmPrimitives

/// A single-producer single-consumer message ring in a named shared-memory
/// segment (kind `RING`): the easy way to stream bytes from one process to
/// another.
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
public final class MessageRing: Sendable {
    public static let kind = SegmentKind("RING")

    /// The segment holding the ring (kept alive by the ring and its ends).
    public let segment: any Segment
    public let ring: SPSCRing

    /// Creates the segment `name` with a ring of `capacity` data bytes (a
    /// power of two).
    public static func create(
        _ name: String, capacity: Int, maxMessageSize: Int? = nil, mode: FileMode = 0o600,
        lifetime: SharedMemorySegment.Lifetime = .removedWithCreator
    ) throws -> MessageRing {
        let segment = try createStructureSegment(name, dataSize: SPSCRing.requiredSize(capacity: capacity), kind: kind,
                                                 mode: mode, lifetime: lifetime) { data in
            _ = try SPSCRing.initialize(data, capacity: capacity, maxMessageSize: maxMessageSize)
        }
        return try MessageRing(segment: segment)
    }

    /// Opens the ring in segment `name`.
    public static func open(_ name: String, timeout: Duration = .seconds(2)) throws -> MessageRing {
        try MessageRing(segment: SharedMemorySegment.open(name, kind: kind, timeout: timeout))
    }

    /// Attaches to a ring in any segment (POSIX, memfd, System V).
    public init(segment: any Segment) throws {
        self.segment = segment
        self.ring = try SPSCRing(attaching: segment.data, anchor: segment)
    }

    /// Becomes the producer (one per ring; taken over from a dead one).
    public func producer(waitStrategy: WaitStrategy = .default) throws(QueueError) -> SPSCRing.Producer {
        try ring.producer(waitStrategy: waitStrategy)
    }

    /// Becomes the consumer (one per ring; taken over from a dead one).
    public func consumer(waitStrategy: WaitStrategy = .default) throws(QueueError) -> SPSCRing.Consumer {
        try ring.consumer(waitStrategy: waitStrategy)
    }
}
