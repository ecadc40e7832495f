import Synchronization
import ShmSystem

extension MessageRing {
    /// Where a reserved record goes: its position and, when it wraps, the
    /// position of the padding record that sends the consumer to offset 0.
    @usableFromInline
    struct Reservation {
        @usableFromInline let start: UInt64
        @usableFromInline let paddingAt: UInt64?
        @inlinable init(start: UInt64, paddingAt: UInt64?) {
            self.start = start
            self.paddingAt = paddingAt
        }
    }

    /// The writing end of an `MessageRing`. One per ring across all processes;
    /// use it from one thread at a time.
    public final class Producer: @unchecked Sendable {
        public let ring: MessageRing
        @usableFromInline let view: RingView
        /// This process's private state, in memory of its own: class stored
        /// `var`s would cost a dynamic exclusivity check on every access from
        /// code inlined into other modules.
        @usableFromInline let local: UnsafeMutablePointer<Local>
        @usableFromInline var waiter: Waiter

        @usableFromInline
        struct Local {
            /// Our authoritative copy of `tail` (only we write the shared one).
            @usableFromInline var tail: UInt64
            /// Last `head` we read from shared memory.
            @usableFromInline var cachedHead: UInt64
            @usableFromInline var claimOpen: Bool
            /// Inside `publishBatch`: the tag the consumer reads first is
            /// withheld until the batch ends (offset -1: none yet).
            @usableFromInline var batching: Bool = false
            @usableFromInline var heldOffset: Int = -1
            @usableFromInline var heldTag: UInt64 = 0
        }

        @inlinable var tail: UInt64 {
            get { local.pointee.tail }
            set { local.pointee.tail = newValue }
        }
        @inlinable var cachedHead: UInt64 {
            get { local.pointee.cachedHead }
            set { local.pointee.cachedHead = newValue }
        }
        @inlinable var claimOpen: Bool {
            get { local.pointee.claimOpen }
            set { local.pointee.claimOpen = newValue }
        }

        init(ring: MessageRing, waitStrategy: WaitStrategy) throws(QueueError) {
            try ring.producerSlot.claim(role: "producer")
            let view = ring.view
            // SYNC POINT: acquire pairs with the stores of tail/head by a
            // previous producer / the consumer.
            var t = view.tail.pointee.load(ordering: .acquiring)
            let h = view.head.pointee.load(ordering: .acquiring)
            guard view.positionsAreSane(head: h, tail: t), t & 15 == 0 else {
                ring.producerSlot.release()
                throw .corruptIndices("head \(h), tail \(t), capacity \(view.capacity)")
            }
            // A previous producer may have died between publishing a record
            // and storing tail: step over whatever it published.
            var steps = 0
            while t &- h < UInt64(view.capacity), steps <= view.capacity / 8 {
                let offset = Int(t & view.mask)
                // SYNC POINT: acquire pairs with the release of that tag in `store`.
                guard view.tagWord(at: offset).pointee.load(ordering: .acquiring) == view.tag(t) else { break }
                let word = (view.data + offset).load(fromByteOffset: MessageRing.RecordOffset.meta, as: UInt64.self)
                let length = Int(word & 0xffff_ffff), type = word >> 32
                if type == MessageRing.typeMessage, length <= view.maxMessageSize,
                   MessageRing.recordSize(length) <= view.capacity - offset {
                    t &+= UInt64(MessageRing.recordSize(length))
                } else if type == MessageRing.typePadding, offset > 0, length == view.capacity - offset - MessageRing.recordHeader {
                    t &+= UInt64(view.capacity - offset)
                } else {
                    break
                }
                steps += 1
            }
            guard view.positionsAreSane(head: h, tail: t) else {
                ring.producerSlot.release()
                throw .corruptIndices("records past tail overrun head \(h)")
            }
            self.ring = ring
            self.view = view
            self.local = .allocate(capacity: 1)
            self.local.initialize(to: Local(tail: t, cachedHead: h, claimOpen: false))
            self.waiter = Waiter(waitStrategy)
            view.spaceParker.resetSleepers() // a dead producer may have left itself counted
            // SYNC POINT: seq_cst stores pair with the consumer's load of
            // `producerMayPark` before it decides to check for a sleeping producer.
            if waitStrategy.neverParks { view.producerMayPark.pointee.store(0, ordering: .sequentiallyConsistent) }
            else { view.producerMayPark.pointee.store(1, ordering: .sequentiallyConsistent) }
        }

        deinit {
            // SYNC POINT: as in `init`: a producer taking over may sleep.
            view.producerMayPark.pointee.store(1, ordering: .sequentiallyConsistent)
            ring.producerSlot.release()
            local.deallocate()
        }

        // MARK: Copying sends

        /// Sends `bytes` if there is room now; returns false if the ring is full.
        @inlinable @discardableResult
        public func trySend(_ bytes: UnsafeRawBufferPointer) throws(QueueError) -> Bool {
            guard let reservation = try reserve(bytes.count) else { return false }
            write(bytes, at: reservation)
            publish(reservation, length: bytes.count)
            return true
        }

        /// Sends `bytes`, waiting for room with the wait strategy for at most
        /// `timeout` (nil: for ever).
        @inlinable
        public func send(_ bytes: UnsafeRawBufferPointer, timeout: Duration? = nil) throws(QueueError) {
            let reservation = try reserveWaiting(bytes.count, timeout: timeout)
            write(bytes, at: reservation)
            publish(reservation, length: bytes.count)
        }

        @discardableResult
        public func trySend(_ bytes: [UInt8]) throws(QueueError) -> Bool {
            try bytes.withUnsafeBytes { raw in Result { () throws(QueueError) in try trySend(raw) } }.get()
        }

        public func send(_ bytes: [UInt8], timeout: Duration? = nil) throws(QueueError) {
            try bytes.withUnsafeBytes { raw in Result { () throws(QueueError) in try send(raw, timeout: timeout) } }.get()
        }

        /// Sends a trivially copyable value, written in place.
        @inlinable
        public func send<T: BitwiseCopyable>(value: T, timeout: Duration? = nil) throws(QueueError) {
            let reservation = try reserveWaiting(MemoryLayout<T>.size, timeout: timeout)
            (view.data + payloadOffset(reservation.start)).storeBytes(of: value, as: T.self)
            publish(reservation, length: MemoryLayout<T>.size)
        }

        /// Sends a trivially copyable value if there is room now.
        @inlinable @discardableResult
        public func trySend<T: BitwiseCopyable>(value: T) throws(QueueError) -> Bool {
            guard let reservation = try reserve(MemoryLayout<T>.size) else { return false }
            (view.data + payloadOffset(reservation.start)).storeBytes(of: value, as: T.self)
            publish(reservation, length: MemoryLayout<T>.size)
            return true
        }

        @inlinable @inline(__always)
        func write(_ bytes: UnsafeRawBufferPointer, at reservation: Reservation) {
            if bytes.count > 0 {
                (view.data + payloadOffset(reservation.start)).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
            }
        }

        // MARK: Zero-copy sends

        /// Claims `count` bytes in the ring, lets `fill` write the message in
        /// place, and publishes it. `fill` returns how many bytes it wrote
        /// (≤ `count`); throwing from `fill` publishes nothing.
        @inlinable
        public func send<E: Error>(
            count: Int, timeout: Duration? = nil,
            _ fill: (UnsafeMutableRawBufferPointer) throws(E) -> Int
        ) throws(SendError<E>) {
            let reservation: Reservation
            do { reservation = try reserveWaiting(count, timeout: timeout) } catch { throw .queue(error) }
            let buffer = UnsafeMutableRawBufferPointer(start: view.data + payloadOffset(reservation.start), count: count)
            let written: Int
            do { written = try fill(buffer) } catch { throw .fill(error) }
            precondition(written >= 0 && written <= count, "fill wrote \(written) of \(count) claimed bytes")
            publish(reservation, length: written)
        }

        /// Claims room for a message of up to `count` bytes if there is room
        /// now. Write into `claim.bytes`, then `commit()`; dropping the claim
        /// publishes nothing. One claim may be open at a time.
        public func tryClaim(count: Int) throws(QueueError) -> RingClaim? {
            precondition(!claimOpen, "a claim is already open on this producer")
            guard let reservation = try reserve(count) else { return nil }
            return makeClaim(reservation, count: count)
        }

        /// Claims room, waiting for it with the wait strategy.
        public func claim(count: Int, timeout: Duration? = nil) throws(QueueError) -> RingClaim {
            precondition(!claimOpen, "a claim is already open on this producer")
            let reservation = try reserveWaiting(count, timeout: timeout)
            return makeClaim(reservation, count: count)
        }

        @inline(__always)
        func makeClaim(_ reservation: Reservation, count: Int) -> RingClaim {
            claimOpen = true
            return RingClaim(producer: self, reservation: reservation,
                             bytes: UnsafeMutableRawBufferPointer(start: view.data + payloadOffset(reservation.start), count: count))
        }

        /// Waits until a message of `count` bytes would fit (without claiming it).
        public func waitForSpace(count: Int, timeout: Duration? = nil) throws(QueueError) -> Bool {
            guard count <= view.maxMessageSize else { throw .messageTooLarge(size: count, maximum: view.maxMessageSize) }
            let needed = footprint(count)
            let view = self.view, tail = self.tail, capacity = UInt64(view.capacity)
            return waiter.wait(on: view.spaceParker, deadline: deadline(after: timeout)) {
                // SYNC POINT (Dekker): seq_cst load pairs with the consumer's seq_cst
                // store of head and its sleeper check (`Parker`).
                tail &- view.head.pointee.load(ordering: .sequentiallyConsistent) &+ needed <= capacity
            }
        }

        // MARK: Internals

        @inlinable @inline(__always)
        func payloadOffset(_ start: UInt64) -> Int { Int(start & view.mask) + MessageRing.recordHeader }

        /// Bytes a record of `length` payload bytes takes from `tail`,
        /// counting the padding to the end if it must wrap.
        @inlinable @inline(__always)
        func footprint(_ length: Int) -> UInt64 {
            let record = MessageRing.recordSize(length)
            let contiguous = view.capacity - Int(tail & view.mask)
            return UInt64((record > contiguous ? contiguous : 0) + record)
        }

        /// Finds room for a record of `length` payload bytes, or nil if the
        /// ring is full. Writes nothing.
        @inlinable @inline(__always)
        func reserve(_ length: Int) throws(QueueError) -> Reservation? {
            guard length >= 0, length <= view.maxMessageSize else {
                throw .messageTooLarge(size: length, maximum: view.maxMessageSize)
            }
            let needed = footprint(length)
            if tail &- cachedHead &+ needed > UInt64(view.capacity) {
                // SYNC POINT: acquire pairs with the consumer's store of head
                // in `Consumer.publishHead`: the bytes it freed may be
                // overwritten only after it has finished reading them.
                let h = view.head.pointee.load(ordering: .acquiring)
                guard view.positionsAreSane(head: h, tail: tail) else {
                    throw .corruptIndices("head \(h) read from shared memory, our tail \(tail), capacity \(view.capacity)")
                }
                cachedHead = h
                if tail &- h &+ needed > UInt64(view.capacity) {
                    // Full: what a batch withholds must go out, or the consumer
                    // never frees the room we wait for.
                    if local.pointee.heldOffset >= 0 { releaseHeld() }
                    return nil
                }
            }
            let record = MessageRing.recordSize(length)
            let contiguous = view.capacity - Int(tail & view.mask)
            if record > contiguous { return Reservation(start: tail &+ UInt64(contiguous), paddingAt: tail) }
            return Reservation(start: tail, paddingAt: nil)
        }

        @inlinable @inline(__always)
        func reserveWaiting(_ length: Int, timeout: Duration?) throws(QueueError) -> Reservation {
            if let reservation = try reserve(length) { return reservation }
            return try reserveSlowly(length, timeout: timeout)
        }

        @usableFromInline @inline(never)
        func reserveSlowly(_ length: Int, timeout: Duration?) throws(QueueError) -> Reservation {
            let needed = footprint(length)
            let capacity = UInt64(view.capacity)
            let view = self.view, tail = self.tail
            let ready = waiter.wait(on: view.spaceParker, deadline: deadline(after: timeout)) {
                // SYNC POINT (Dekker): as in `waitForSpace`.
                tail &- view.head.pointee.load(ordering: .sequentiallyConsistent) &+ needed <= capacity
            }
            if ready, let reservation = try reserve(length) { return reservation }
            throw .timedOut(after: timeout)
        }

        /// Makes the record visible: its meta word, then its tag; then (if it
        /// wrapped) the padding record that leads the consumer to it.
        @inlinable @inline(__always)
        func publish(_ reservation: Reservation, length: Int) {
            let next = reservation.start &+ UInt64(MessageRing.recordSize(length))
            let consumerMayPark = view.consumerMayPark.pointee.load(ordering: .relaxed) != 0
            let offset = Int(reservation.start & view.mask)
            (view.data + offset).storeBytes(of: UInt64(length) | MessageRing.typeMessage << 32, toByteOffset: MessageRing.RecordOffset.meta, as: UInt64.self)
            let ordering = PublishOrdering.forConsumer(mayPark: consumerMayPark)
            // In a batch, the first tag the consumer will read (the padding's if
            // the record wrapped) waits for the batch's end: the consumer then
            // finds every record of the batch complete, one line transfer each
            // instead of a ping-pong per record.
            let withhold = local.pointee.batching && local.pointee.heldOffset < 0
            if withhold && reservation.paddingAt == nil {
                local.pointee.heldOffset = offset
                local.pointee.heldTag = view.tag(reservation.start)
            } else {
                store(view.tag(reservation.start), at: offset, ordering: ordering)
            }
            if let padding = reservation.paddingAt {
                let at = Int(padding & view.mask)
                (view.data + at).storeBytes(of: UInt64(view.capacity - at - MessageRing.recordHeader) | MessageRing.typePadding << 32,
                                            toByteOffset: MessageRing.RecordOffset.meta, as: UInt64.self)
                if withhold {
                    local.pointee.heldOffset = at
                    local.pointee.heldTag = view.tag(padding)
                } else {
                    store(view.tag(padding), at: at, ordering: ordering)
                }
            }
            tail = next
            // SYNC POINT: release pairs with the acquire loads of tail by a consumer
            // attaching (`Consumer.init`) and by diagnostics (`usedBytes`); the
            // consumer's fast path goes by the tags.
            view.tail.pointee.store(next, ordering: .releasing)
            if consumerMayPark && local.pointee.heldOffset < 0 { view.dataParker.wakeIfSleeping() }
        }

        @inlinable @inline(__always)
        func store(_ tag: UInt64, at offset: Int, ordering: PublishOrdering) {
            if ordering == .sequentiallyConsistent {
                // SYNC POINT: release (seq_cst) pairs with the consumer's
                // acquire load of this tag in `Consumer.peek`/`drain`: the meta
                // word and payload written before it are visible. seq_cst so
                // the load of `sleepers` in `wakeIfSleeping` cannot pass it
                // (Dekker with `Parker.sleep`).
                view.tagWord(at: offset).pointee.store(tag, ordering: .sequentiallyConsistent)
            } else {
                // SYNC POINT: release pairs with the consumer's acquire load of
                // this tag in `Consumer.peek`/`drain` (the consumer busy-spins
                // and never sleeps, so no sleeper check is needed).
                view.tagWord(at: offset).pointee.store(tag, ordering: .releasing)
            }
        }

        func claimEnded() { claimOpen = false }

        /// Publishes every message `body` sends or commits as one batch: the
        /// consumer sees none of them until `body` returns, then all. A ring
        /// that fills up inside `body` publishes what it holds first (the
        /// consumer must free room). For streams of small messages: the
        /// consumer pulls each line once instead of fighting the producer for
        /// it message by message.
        @inlinable
        public func publishBatch<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
            precondition(!local.pointee.batching, "publishBatch does not nest")
            local.pointee.batching = true
            defer {
                local.pointee.batching = false
                if local.pointee.heldOffset >= 0 { releaseHeld() }
            }
            return try body()
        }

        /// Stores the withheld tag (and wakes a sleeping consumer).
        @usableFromInline @inline(never)
        func releaseHeld() {
            let consumerMayPark = view.consumerMayPark.pointee.load(ordering: .relaxed) != 0
            store(local.pointee.heldTag, at: local.pointee.heldOffset, ordering: .forConsumer(mayPark: consumerMayPark))
            local.pointee.heldOffset = -1
            if consumerMayPark { view.dataParker.wakeIfSleeping() }
        }
    }
}

/// Why a zero-copy `send(count:_:)` failed: the ring, or the caller's fill closure.
public enum SendError<Failure: Error>: Error {
    case queue(QueueError)
    case fill(Failure)
}

/// Room for one message, claimed in a ring and written in place. `commit()`
/// publishes it; dropping the claim without committing publishes nothing.
public struct RingClaim: ~Copyable {
    let producer: MessageRing.Producer
    let reservation: MessageRing.Reservation
    /// Where to write the message, in shared memory (valid until commit or drop).
    public let unsafeBytes: UnsafeMutableRawBufferPointer

    /// Bytes claimed.
    public var count: Int { unsafeBytes.count }

    @available(*, deprecated, renamed: "unsafeBytes")
    public var bytes: UnsafeMutableRawBufferPointer { unsafeBytes }

    init(producer: MessageRing.Producer, reservation: MessageRing.Reservation, bytes: UnsafeMutableRawBufferPointer) {
        self.producer = producer
        self.reservation = reservation
        self.unsafeBytes = bytes
    }

    /// Publishes the message with all claimed bytes.
    public consuming func commit() {
        producer.publish(reservation, length: unsafeBytes.count)
    }

    /// Publishes the message with its first `count` bytes.
    public consuming func commit(count: Int) {
        precondition(count >= 0 && count <= unsafeBytes.count, "commit of \(count) bytes from a claim of \(unsafeBytes.count)")
        producer.publish(reservation, length: count)
    }

    /// Gives the room back unpublished (the same as dropping the claim).
    public consuming func abort() {}

    deinit { producer.claimEnded() }
}
