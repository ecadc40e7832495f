import ShmSystem
@_spi(ShmInternals) import ShmPrimitives

/// A bounded multi-producer multi-consumer queue of fixed-size slots in a
/// named segment (kind `MPMC`).
public final class MessageQueue: Sendable {
    public static let kind = SegmentKind("MPMC")

    public let segment: any Segment
    public let queue: MPMCQueue

    /// Creates the segment `name` with `capacity` slots (a power of two) of
    /// `slotSize` bytes.
    public static func create(
        _ name: String, capacity: Int, slotSize: Int, mode: FileMode = 0o600,
        lifetime: SharedMemorySegment.Lifetime = .removedWithCreator
    ) throws -> MessageQueue {
        let segment = try createStructureSegment(name, dataSize: MPMCQueue.requiredSize(capacity: capacity, slotSize: slotSize),
                                                 kind: kind, mode: mode, lifetime: lifetime) { data in
            _ = try MPMCQueue.initialize(data, capacity: capacity, slotSize: slotSize)
        }
        return try MessageQueue(segment: segment)
    }

    /// Opens the queue in segment `name`.
    public static func open(_ name: String, timeout: Duration = .seconds(2)) throws -> MessageQueue {
        try MessageQueue(segment: SharedMemorySegment.open(name, kind: kind, timeout: timeout))
    }

    /// Attaches to a queue in any segment.
    public init(segment: any Segment) throws {
        self.segment = segment
        self.queue = try MPMCQueue(attaching: segment.data, anchor: segment)
    }
}
