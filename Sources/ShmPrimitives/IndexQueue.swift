import Synchronization
import ShmSystem

/// A single-producer single-consumer queue of 64-bit values in shared
/// memory whose producer may also drop the oldest value when it is full
/// (for "overwrite oldest" delivery). Services use it to pass sample
/// references between processes.
///
/// ```text
/// offset  contents
///    0    header: magic "IDXQ", version, capacity (power of two), salt, regionSize, checksum
///  128    tail: UInt64, values ever pushed (producer)
///  256    head: UInt64, values ever removed — advanced with CAS by the consumer
///           (pop) and by the producer (dropping the oldest)
///  384    entries[capacity] × 16 bytes: tag UInt64, value UInt64
///           tag = splitmix64(position ^ salt) | 1, stored last with release
/// ```
///
/// The consumer polls the entry at `head` and compares its tag with the tag
/// of that position (one cache-line transfer per value); a value becomes
/// the consumer's only when its CAS of `head` succeeds, so a value the
/// producer dropped in the meantime is never returned. Values read from
/// shared memory are the caller's to validate (they are indices into
/// another structure).
///
/// The queue is plain pointers (copying it costs nothing and retains
/// nothing): whoever attaches keeps the mapping alive.
@_spi(ShmInternals) public struct IndexQueue: @unchecked Sendable {
    /// Byte offsets inside an entry (the table above).
    public enum EntryOffset {
        public static let tag = 0, value = 8
    }
    static let magic = SegmentKind("IDXQ")
    static let version: UInt32 = 1
    static let tailOffset = 128, headOffset = 256, entriesOffset = 384

    public let capacity: Int
    @usableFromInline let mask: UInt64
    @usableFromInline let salt: UInt64
    @usableFromInline let entries: UnsafeMutableRawPointer
    @usableFromInline let tail: UnsafeMutablePointer<Atomic<UInt64>>
    @usableFromInline let head: UnsafeMutablePointer<Atomic<UInt64>>

    public static func requiredSize(capacity: Int) -> Int { entriesOffset + 16 * capacity }

    /// Smallest power of two ≥ `count` (at least 2).
    public static func capacity(atLeast count: Int) -> Int {
        var c = 2
        while c < count { c <<= 1 }
        return c
    }

    public static func initialize(_ region: MappedBytes, capacity: Int) throws(QueueError) -> IndexQueue {
        guard capacity >= 2, capacity <= 1 << 24, capacity & (capacity - 1) == 0 else {
            throw .invalidConfiguration("index queue capacity \(capacity) must be a power of two from 2 to 2^24")
        }
        let needed = requiredSize(capacity: capacity)
        guard region.count >= needed else { throw .regionTooSmall(needed: needed, available: region.count) }
        region.view(0..<needed).fill(with: 0)
        LayoutHeader.write(region.unsafeBaseAddress, magic: magic, version: version,
                           fields: [UInt64(capacity), UInt64.random(in: 1...UInt64.max), UInt64(needed)])
        return try IndexQueue(attaching: region)
    }

    public init(attaching region: MappedBytes) throws(QueueError) {
        let f = try LayoutHeader.read(region, magic: IndexQueue.magic, version: IndexQueue.version, count: 3, what: "index queue")
        guard f[0] >= 2, f[0] <= 1 << 24, f[0] & (f[0] - 1) == 0, f[2] == UInt64(IndexQueue.requiredSize(capacity: Int(f[0]))),
              Int(f[2]) <= region.count else {
            throw .invalidLayout("inconsistent index queue header: capacity \(f[0]), size \(f[2])")
        }
        capacity = Int(f[0])
        mask = f[0] - 1
        salt = f[1]
        let base = region.unsafeBaseAddress
        entries = base + IndexQueue.entriesOffset
        tail = UnsafeMutablePointer(OpaquePointer(base + IndexQueue.tailOffset))
        head = UnsafeMutablePointer(OpaquePointer(base + IndexQueue.headOffset))
    }

    @inlinable @inline(__always)
    func tag(_ position: UInt64) -> UInt64 { positionTag(position, salt: salt) }

    @inlinable @inline(__always)
    func entry(_ position: UInt64) -> UnsafeMutableRawPointer { entries + Int(position & mask) * 16 }

    @inlinable @inline(__always)
    func tagWord(_ position: UInt64) -> UnsafeMutablePointer<Atomic<UInt64>> { UnsafeMutablePointer(OpaquePointer(entry(position))) }

    /// Values ever pushed since the queue was laid out (monitoring: relaxed).
    public var pushedCount: UInt64 { tail.pointee.load(ordering: .relaxed) }

    /// Values waiting (a snapshot; 0 if the positions are inconsistent).
    public var count: Int {
        let t = tail.pointee.load(ordering: .relaxed), h = head.pointee.load(ordering: .relaxed)
        return t >= h && t - h <= UInt64(capacity) ? Int(t - h) : 0
    }

    /// What a push did.
    public enum PushOutcome: Equatable, Sendable {
        case pushed
        /// Pushed after dropping this oldest value (overwrite mode).
        case pushedDropping(UInt64)
        /// Full, and not overwriting.
        case full
    }

    /// The producer's end as plain pointers: the queue and this process's
    /// view of its positions. Owned by a `Producer`, which frees the state.
    public struct Writer: @unchecked Sendable {
        public let queue: IndexQueue
        @usableFromInline let state: UnsafeMutablePointer<UInt64> // [tail, cachedHead]
        /// The most values the queue holds for this producer (≤ capacity): a
        /// service's buffer size, which the power-of-two capacity may exceed.
        /// Pools are sized by it, so a queue filled past it would starve them.
        @usableFromInline let limit: UInt64

        @usableFromInline init(queue: IndexQueue, state: UnsafeMutablePointer<UInt64>, limit: UInt64) {
            self.queue = queue
            self.state = state
            self.limit = limit
        }

        /// Pushes `value`; when full, drops the oldest value if `overwrite`.
        /// `ordering`: `.sequentiallyConsistent` when the consumer may sleep
        /// (see `PublishOrdering`). Inlined: the common case (room, as far as
        /// the cached head says) is a few stores; the rest is out of line.
        @inlinable @inline(__always)
        public func push(_ value: UInt64, overwrite: Bool, ordering: PublishOrdering) throws(QueueError) -> PushOutcome {
            let t = state[0]
            if _slowPath(t &- state[1] >= limit) { return try pushLookingAtHead(value, overwrite: overwrite, ordering: ordering) }
            publish(value, at: t, ordering: ordering)
            return .pushed
        }

        /// The queue looks full from the cached head: reload it, then push,
        /// drop the oldest (`overwrite`) or report `.full`.
        @usableFromInline @inline(never)
        func pushLookingAtHead(_ value: UInt64, overwrite: Bool, ordering: PublishOrdering) throws(QueueError) -> PushOutcome {
            let t = state[0]
            var dropped: UInt64?
            // SYNC POINT: acquire pairs with the consumer's CAS of head in `pop`.
            var h = queue.head.pointee.load(ordering: .acquiring)
            guard h <= t, t &- h <= UInt64(queue.capacity) else {
                throw .corruptIndices("index queue head \(h) read from shared memory, tail \(t)")
            }
            state[1] = h
            if t &- h >= limit {
                guard overwrite else { return .full }
                // Drop the oldest: read it, then take it with the same CAS the consumer uses.
                while t &- h >= limit {
                    let oldest = queue.entry(h).load(fromByteOffset: EntryOffset.value, as: UInt64.self)
                    // SYNC POINT: acquire-release CAS pairs with the consumer's CAS of head in `pop`.
                    let (done, actual) = queue.head.pointee.compareExchange(expected: h, desired: h &+ 1, ordering: .acquiringAndReleasing)
                    if done {
                        dropped = oldest
                        h &+= 1
                    } else {
                        guard actual <= t, t &- actual <= UInt64(queue.capacity) else {
                            throw .corruptIndices("index queue head \(actual) read from shared memory, tail \(t)")
                        }
                        h = actual
                    }
                }
                state[1] = h
            }
            publish(value, at: t, ordering: ordering)
            if let dropped { return .pushedDropping(dropped) }
            return .pushed
        }

        /// Writes `value` at position `t` and publishes it (tag last).
        @inlinable @inline(__always)
        func publish(_ value: UInt64, at t: UInt64, ordering: PublishOrdering) {
            let at = queue.entry(t)
            at.storeBytes(of: value, toByteOffset: EntryOffset.value, as: UInt64.self)
            if ordering == .sequentiallyConsistent {
                // SYNC POINT: seq_cst store releases the value to the consumer's
                // acquire load of the tag in `pop`, and orders the caller's
                // sleeper check after it (Dekker with `Parker.sleep`).
                queue.tagWord(t).pointee.store(queue.tag(t), ordering: .sequentiallyConsistent)
            } else {
                // SYNC POINT: release pairs with the acquire load of the tag in `pop`.
                queue.tagWord(t).pointee.store(queue.tag(t), ordering: .releasing)
            }
            state[0] = t &+ 1
            // SYNC POINT: release pairs with the acquire loads of tail in `Producer.init`
            // and `count` (diagnostics; consumers go by the tags).
            queue.tail.pointee.store(t &+ 1, ordering: .releasing)
        }

        /// Pushes for a consumer that sleeps on the queue's parker when
        /// `consumerMayPark` (then the publication is seq_cst, for the
        /// Dekker check that follows) or only polls it (release).
        @inlinable @inline(__always)
        public func push(_ value: UInt64, overwrite: Bool, consumerMayPark: Bool) throws(QueueError) -> PushOutcome {
            try push(value, overwrite: overwrite, ordering: .forConsumer(mayPark: consumerMayPark))
        }

        /// Pushes to a consumer that never sleeps on this queue and takes
        /// values when it gets round to it (a return queue): a release
        /// publication, never overwriting.
        @inlinable @inline(__always)
        public func pushToPoller(_ value: UInt64) throws(QueueError) -> PushOutcome {
            try push(value, overwrite: false, ordering: .release)
        }

        /// Whether a push would find room now, reading the consumer's head
        /// with a seq_cst load: a `Parker` condition for a producer waiting
        /// for space (see `SampleInbox.SpaceWakeup`).
        public func hasRoom() -> Bool {
            // SYNC POINT (Dekker): seq_cst load pairs with the consumer's
            // release store of head + seq_cst fence in `SpaceWakeup`.
            let h = queue.head.pointee.load(ordering: .sequentiallyConsistent)
            return state[0] &- h < limit
        }
    }

    /// The producer's end. Keep one per queue, in the producing process.
    public final class Producer: @unchecked Sendable {
        public let writer: Writer
        public var queue: IndexQueue { writer.queue }

        public typealias Outcome = PushOutcome

        /// - Parameter limit: the most values to keep queued (default and at
        ///   most the capacity).
        public init(_ queue: IndexQueue, limit: Int? = nil) throws(QueueError) {
            // SYNC POINT: acquire pairs with the release stores of tail in `push` and of
            // head in `pop`/`popExclusive` by the previous producer and the consumer.
            let t = queue.tail.pointee.load(ordering: .acquiring)
            let h = queue.head.pointee.load(ordering: .acquiring)
            guard t >= h, t - h <= UInt64(queue.capacity) else {
                throw .corruptIndices("index queue head \(h), tail \(t), capacity \(queue.capacity)")
            }
            let state = UnsafeMutablePointer<UInt64>.allocate(capacity: 2)
            state[0] = t
            state[1] = h
            writer = Writer(queue: queue, state: state, limit: UInt64(min(queue.capacity, max(1, limit ?? queue.capacity))))
        }

        deinit { writer.state.deallocate() }

        /// Pushes `value` (see `Writer.push`).
        @inlinable
        public func push(_ value: UInt64, overwrite: Bool, ordering: PublishOrdering) throws(QueueError) -> PushOutcome {
            try writer.push(value, overwrite: overwrite, ordering: ordering)
        }
    }

    /// Takes the oldest value, or nil if there is none. Single consumer.
    @inlinable
    public func pop() -> UInt64? {
        // SYNC POINT: acquire pairs with the producer's CAS of head when it drops a value.
        var h = head.pointee.load(ordering: .acquiring)
        while true {
            // SYNC POINT: acquire pairs with the producer's store of this tag in `push`.
            guard tagWord(h).pointee.load(ordering: .acquiring) == tag(h) else { return nil }
            let value = entry(h).load(fromByteOffset: EntryOffset.value, as: UInt64.self)
            let (done, actual) = head.pointee.compareExchange(expected: h, desired: h &+ 1, ordering: .acquiringAndReleasing)
            if done { return value }
            h = actual // the producer dropped it: look at the new oldest
        }
    }

    /// Takes the oldest value, or nil if there is none, for a queue whose
    /// producer never drops values (never pushes with `overwrite: true`):
    /// head is then this consumer's alone, and advancing it is a plain
    /// release store instead of a locked compare-and-swap.
    @inlinable
    public func popExclusive() -> UInt64? {
        let h = head.pointee.load(ordering: .relaxed)
        // SYNC POINT: acquire pairs with the producer's store of this tag in `push`.
        guard tagWord(h).pointee.load(ordering: .acquiring) == tag(h) else { return nil }
        let value = entry(h).load(fromByteOffset: EntryOffset.value, as: UInt64.self)
        // SYNC POINT: release pairs with the producer's acquire load of head
        // in `push` (the entry's slot may be reused only after we read it).
        head.pointee.store(h &+ 1, ordering: .releasing)
        return value
    }

    /// True if a value is waiting (seq_cst load: usable as a `Parker` condition).
    @inlinable
    public var hasValue: Bool {
        // SYNC POINT (Dekker): seq_cst loads pair with the sleeper announcement in
        // `Parker.sleep` and the producer's seq_cst tag store in `push`.
        let h = head.pointee.load(ordering: .sequentiallyConsistent)
        return tagWord(h).pointee.load(ordering: .sequentiallyConsistent) == tag(h)
    }
}
