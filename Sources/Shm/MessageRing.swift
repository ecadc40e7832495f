import ShmSystem
import ShmPrimitives

/// Creates a named segment of `kind` whose data area is laid out by `layout`
/// before anyone can open it.
func createStructureSegment(
    _ name: String, dataSize: Int, kind: SegmentKind, mode: FileMode,
    lifetime: SharedMemorySegment.Lifetime, layout: @escaping (MappedBytes) throws -> Void
) throws -> SharedMemorySegment {
    try SharedMemorySegment.create(SegmentName(name), size: dataSize, mode: mode, kind: kind, lifetime: lifetime,
                                   initialize: layout)
}

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
