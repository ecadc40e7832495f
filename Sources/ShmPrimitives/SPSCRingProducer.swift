import Synchronization
import ShmSystem

extension SPSCRing {
    /// The writing end of an `SPSCRing`. One per ring across all processes;
    /// use it from one thread at a time.
    public final class Producer: @unchecked Sendable {
        public let ring: SPSCRing
        /// Our authoritative copy of `tail` (only we write the shared one).
        var tail: UInt64
        /// Last `head` we read from shared memory.
        var cachedHead: UInt64
        var waiter: Waiter
        var claimOpen = false

        init(ring: SPSCRing, waitStrategy: WaitStrategy) throws(QueueError) {
            try ring.producerSlot.claim(role: "producer")
            // SYNC POINT: acquire pairs with the seq_cst stores of tail/head
            // by a previous producer / the consumer.
            let t = ring.tail.pointee.load(ordering: .acquiring)
            let h = ring.head.pointee.load(ordering: .acquiring)
            guard ring.positionsAreSane(head: h, tail: t), t & 7 == 0 else {
                ring.producerSlot.release()
                throw .corruptIndices("head \(h), tail \(t), capacity \(ring.capacity)")
            }
            self.ring = ring
            self.tail = t
            self.cachedHead = h
            self.waiter = Waiter(waitStrategy)
            ring.spaceParker.resetSleepers() // a dead producer may have left itself counted
        }

        deinit { ring.producerSlot.release() }

        // MARK: Copying sends

        /// Sends `bytes` if there is room now; returns false if the ring is full.
        @discardableResult
        public func trySend(_ bytes: UnsafeRawBufferPointer) throws(QueueError) -> Bool {
            guard let start = try reserve(bytes.count) else { return false }
            if bytes.count > 0 { (ring.data + payloadOffset(start)).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count) }
            publish(start: start, length: bytes.count)
            return true
        }

        /// Sends `bytes`, waiting for room with the wait strategy for at most
        /// `timeout` (nil: for ever).
        public func send(_ bytes: UnsafeRawBufferPointer, timeout: Duration? = nil) throws(QueueError) {
            let start = try reserveWaiting(bytes.count, timeout: timeout)
            if bytes.count > 0 { (ring.data + payloadOffset(start)).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count) }
            publish(start: start, length: bytes.count)
        }

        @discardableResult
        public func trySend(_ bytes: [UInt8]) throws(QueueError) -> Bool {
            try bytes.withUnsafeBytes { raw in Result { () throws(QueueError) in try trySend(raw) } }.get()
        }

        public func send(_ bytes: [UInt8], timeout: Duration? = nil) throws(QueueError) {
            try bytes.withUnsafeBytes { raw in Result { () throws(QueueError) in try send(raw, timeout: timeout) } }.get()
        }

        /// Sends a trivially copyable value, written in place.
        public func send<T: BitwiseCopyable>(value: T, timeout: Duration? = nil) throws(QueueError) {
            let start = try reserveWaiting(MemoryLayout<T>.size, timeout: timeout)
            (ring.data + payloadOffset(start)).storeBytes(of: value, as: T.self)
            publish(start: start, length: MemoryLayout<T>.size)
        }

        /// Sends a trivially copyable value if there is room now.
        @discardableResult
        public func trySend<T: BitwiseCopyable>(value: T) throws(QueueError) -> Bool {
            guard let start = try reserve(MemoryLayout<T>.size) else { return false }
            (ring.data + payloadOffset(start)).storeBytes(of: value, as: T.self)
            publish(start: start, length: MemoryLayout<T>.size)
            return true
        }

        // MARK: Zero-copy sends

        /// Claims `count` bytes in the ring, lets `fill` write the message in
        /// place, and publishes it. `fill` returns how many bytes it wrote
        /// (≤ `count`); throwing from `fill` publishes nothing.
        public func send<E: Error>(
            count: Int, timeout: Duration? = nil,
            _ fill: (UnsafeMutableRawBufferPointer) throws(E) -> Int
        ) throws(SendError<E>) {
            let start: UInt64
            do { start = try reserveWaiting(count, timeout: timeout) } catch { throw .queue(error) }
            let buffer = UnsafeMutableRawBufferPointer(start: ring.data + payloadOffset(start), count: count)
            let written: Int
            do { written = try fill(buffer) } catch { throw .fill(error) }
            precondition(written >= 0 && written <= count, "fill wrote \(written) of \(count) claimed bytes")
            publish(start: start, length: written)
        }

        /// Claims room for a message of up to `count` bytes if there is room
        /// now. Write into `claim.bytes`, then `commit()`; dropping the claim
        /// publishes nothing. One claim may be open at a time.
        public func tryClaim(count: Int) throws(QueueError) -> RingClaim? {
            precondition(!claimOpen, "a claim is already open on this producer")
            guard let start = try reserve(count) else { return nil }
            claimOpen = true
            return RingClaim(producer: self, start: start,
                             bytes: UnsafeMutableRawBufferPointer(start: ring.data + payloadOffset(start), count: count))
        }

        /// Claims room, waiting for it with the wait strategy.
        public func claim(count: Int, timeout: Duration? = nil) throws(QueueError) -> RingClaim {
            precondition(!claimOpen, "a claim is already open on this producer")
            let start = try reserveWaiting(count, timeout: timeout)
            claimOpen = true
            return RingClaim(producer: self, start: start,
                             bytes: UnsafeMutableRawBufferPointer(start: ring.data + payloadOffset(start), count: count))
        }

        // MARK: Internals

        @inline(__always)
        func payloadOffset(_ start: UInt64) -> Int { Int(start & ring.mask) + SPSCRing.recordHeader }

        /// Bytes `length` needs, counting padding to the end if it must wrap.
        @inline(__always)
        func footprint(_ length: Int) -> (record: Int, padding: Int) {
            let record = SPSCRing.align8(SPSCRing.recordHeader + length)
            let contiguous = ring.capacity - Int(tail & ring.mask)
            return (record, record > contiguous ? contiguous : 0)
        }

        /// Finds room for a record of `length` payload bytes; writes the
        /// padding record if it must wrap; returns the record's position, or
        /// nil if the ring is full.
        @inline(__always)
        func reserve(_ length: Int) throws(QueueError) -> UInt64? {
            guard length >= 0, length <= ring.maxMessageSize else {
                throw .messageTooLarge(size: length, maximum: ring.maxMessageSize)
            }
            let (record, padding) = footprint(length)
            let needed = UInt64(record + padding)
            if tail &- cachedHead &+ needed > UInt64(ring.capacity) {
                // SYNC POINT: acquire pairs with the consumer's seq_cst store
                // of head in `Consumer.publishHead` (the bytes it freed may be
                // overwritten only after it has finished reading them).
                let h = ring.head.pointee.load(ordering: .acquiring)
                guard ring.positionsAreSane(head: h, tail: tail) else {
                    throw .corruptIndices("head \(h) read from shared memory, our tail \(tail), capacity \(ring.capacity)")
                }
                cachedHead = h
                if tail &- h &+ needed > UInt64(ring.capacity) { return nil }
            }
            if padding > 0 {
                let at = ring.data + Int(tail & ring.mask)
                at.storeBytes(of: UInt32(padding - SPSCRing.recordHeader), as: UInt32.self)
                at.storeBytes(of: SPSCRing.typePadding, toByteOffset: 4, as: UInt32.self)
            }
            return tail &+ UInt64(padding)
        }

        func reserveWaiting(_ length: Int, timeout: Duration?) throws(QueueError) -> UInt64 {
            if let start = try reserve(length) { return start }
            let (record, padding) = footprint(length)
            let needed = UInt64(record + padding)
            let capacity = UInt64(ring.capacity)
            let ring = self.ring, tail = self.tail
            let ready = waiter.wait(on: ring.spaceParker, deadline: deadline(after: timeout)) {
                tail &- ring.head.pointee.load(ordering: .sequentiallyConsistent) &+ needed <= capacity
            }
            if ready, let start = try reserve(length) { return start }
            throw .timedOut(timeout)
        }

        /// Writes the record header and makes the record visible.
        @inline(__always)
        func publish(start: UInt64, length: Int) {
            let at = ring.data + Int(start & ring.mask)
            at.storeBytes(of: UInt32(length), as: UInt32.self)
            at.storeBytes(of: SPSCRing.typeMessage, toByteOffset: 4, as: UInt32.self)
            tail = start &+ UInt64(SPSCRing.align8(SPSCRing.recordHeader + length))
            // SYNC POINT: this store releases the record (header and payload)
            // to the consumer's acquire load of tail in `Consumer.peek`; it is
            // seq_cst so that the load of `sleepers` in `wakeIfSleeping` cannot
            // pass it (Dekker with `Parker.sleep`).
            ring.tail.pointee.store(tail, ordering: .sequentiallyConsistent)
            ring.dataParker.wakeIfSleeping()
        }

        func claimEnded() { claimOpen = false }
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
    let producer: SPSCRing.Producer
    let start: UInt64
    /// Where to write the message (valid until commit or drop).
    public let bytes: UnsafeMutableRawBufferPointer

    init(producer: SPSCRing.Producer, start: UInt64, bytes: UnsafeMutableRawBufferPointer) {
        self.producer = producer
        self.start = start
        self.bytes = bytes
    }

    /// Publishes the message with all claimed bytes.
    public consuming func commit() {
        producer.publish(start: start, length: bytes.count)
    }

    /// Publishes the message with its first `count` bytes.
    public consuming func commit(count: Int) {
        precondition(count >= 0 && count <= bytes.count, "commit of \(count) bytes from a claim of \(bytes.count)")
        producer.publish(start: start, length: count)
    }

    /// Gives the room back unpublished (the same as dropping the claim).
    public consuming func abort() {}

    deinit { producer.claimEnded() }
}
