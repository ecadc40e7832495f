import Synchronization
import ShmSystem

extension SPSCRing {
    /// The reading end of an `SPSCRing`. One per ring across all processes;
    /// use it from one thread at a time.
    public final class Consumer: @unchecked Sendable {
        public let ring: SPSCRing
        /// Our authoritative copy of `head` (only we write the shared one).
        var head: UInt64
        /// Last `tail` we read from shared memory.
        var cachedTail: UInt64
        var waiter: Waiter
        var lentOut = false

        init(ring: SPSCRing, waitStrategy: WaitStrategy) throws(QueueError) {
            try ring.consumerSlot.claim(role: "consumer")
            // SYNC POINT: acquire pairs with the seq_cst stores of head/tail.
            let h = ring.head.pointee.load(ordering: .acquiring)
            let t = ring.tail.pointee.load(ordering: .acquiring)
            guard ring.positionsAreSane(head: h, tail: t), h & 7 == 0 else {
                ring.consumerSlot.release()
                throw .corruptIndices("head \(h), tail \(t), capacity \(ring.capacity)")
            }
            self.ring = ring
            self.head = h
            self.cachedTail = h
            self.waiter = Waiter(waitStrategy)
            ring.dataParker.resetSleepers() // a dead consumer may have left itself counted
        }

        deinit { ring.consumerSlot.release() }

        /// The next record's payload position, length and the head after it,
        /// or nil if the ring is empty. Skips padding records.
        @inline(__always)
        func peek() throws(QueueError) -> (offset: Int, length: Int, next: UInt64)? {
            precondition(!lentOut, "the previous message has not been released")
            while true {
                if head == cachedTail {
                    // SYNC POINT: acquire pairs with the producer's seq_cst
                    // store of tail in `Producer.publish`: the record's bytes
                    // are visible once the new tail is.
                    let t = ring.tail.pointee.load(ordering: .acquiring)
                    guard ring.positionsAreSane(head: head, tail: t), t & 7 == 0 else {
                        throw .corruptIndices("tail \(t) read from shared memory, our head \(head), capacity \(ring.capacity)")
                    }
                    cachedTail = t
                    if head == t { return nil }
                }
                let offset = Int(head & ring.mask)
                let at = ring.data + offset
                let length = Int(at.load(as: UInt32.self))
                let type = at.load(fromByteOffset: 4, as: UInt32.self)
                let available = Int(cachedTail &- head)
                let room = ring.capacity - offset
                switch type {
                case SPSCRing.typeMessage:
                    let size = SPSCRing.align8(SPSCRing.recordHeader + length)
                    guard length <= ring.maxMessageSize, size <= room, size <= available else {
                        try skipCorrupt(at: offset, "message length \(length) does not fit (\(available) bytes written, \(room) to the end)")
                    }
                    return (offset + SPSCRing.recordHeader, length, head &+ UInt64(size))
                case SPSCRing.typePadding:
                    guard length == room - SPSCRing.recordHeader, room <= available else {
                        try skipCorrupt(at: offset, "padding of \(length) bytes at \(offset) does not reach the end")
                    }
                    head &+= UInt64(room)
                    publishHead()
                default:
                    try skipCorrupt(at: offset, "unknown record type \(type)")
                }
            }
        }

        /// Drops everything up to the producer's position after a corrupt record.
        func skipCorrupt(at offset: Int, _ reason: String) throws(QueueError) -> Never {
            ring.lost.pointee.wrappingAdd(1, ordering: .relaxed)
            head = cachedTail
            publishHead()
            throw .corruptRecord(offset: offset, reason: reason + "; skipped to the write position")
        }

        @inline(__always)
        func release(next: UInt64) {
            head = next
            publishHead()
        }

        @inline(__always)
        func publishHead() {
            // SYNC POINT: this store releases the consumed bytes to the
            // producer's acquire load of head in `Producer.reserve`; it is
            // seq_cst for the Dekker handshake with `Parker.sleep`.
            ring.head.pointee.store(head, ordering: .sequentiallyConsistent)
            ring.spaceParker.wakeIfSleeping()
        }

        /// Waits for a record; returns nil at the deadline.
        func peekWaiting(timeout: Duration?) throws(QueueError) -> (offset: Int, length: Int, next: UInt64)? {
            if let found = try peek() { return found }
            let ring = self.ring, head = self.head
            _ = waiter.wait(on: ring.dataParker, deadline: deadline(after: timeout)) {
                ring.tail.pointee.load(ordering: .sequentiallyConsistent) != head
            }
            return try peek()
        }

        // MARK: Copying receives

        /// Copies the next message into `buffer` if one is there; returns its
        /// length, or nil if the ring is empty. A message larger than the
        /// buffer stays queued (`bufferTooSmall`).
        public func tryReceive(into buffer: UnsafeMutableRawBufferPointer) throws(QueueError) -> Int? {
            guard let record = try peek() else { return nil }
            return try copyOut(record, into: buffer)
        }

        /// Copies the next message into `buffer`, waiting at most `timeout`.
        public func receive(into buffer: UnsafeMutableRawBufferPointer, timeout: Duration? = nil) throws(QueueError) -> Int {
            guard let record = try peekWaiting(timeout: timeout) else { throw .timedOut(timeout) }
            return try copyOut(record, into: buffer)
        }

        /// The next message as a new array (allocates), or nil if empty.
        public func tryReceive() throws(QueueError) -> [UInt8]? {
            guard let record = try peek() else { return nil }
            return takeArray(record)
        }

        /// The next message as a new array (allocates), waiting at most `timeout`.
        public func receive(timeout: Duration? = nil) throws(QueueError) -> [UInt8] {
            guard let record = try peekWaiting(timeout: timeout) else { throw .timedOut(timeout) }
            return takeArray(record)
        }

        /// The next message as a value of a trivially copyable type, read in
        /// place; the message must be exactly `MemoryLayout<T>.size` bytes.
        public func receive<T: BitwiseCopyable>(_ type: T.Type, timeout: Duration? = nil) throws(QueueError) -> T {
            guard let record = try peekWaiting(timeout: timeout) else { throw .timedOut(timeout) }
            return try takeValue(record, as: type)
        }

        /// Like `receive(_:timeout:)` without waiting.
        public func tryReceive<T: BitwiseCopyable>(_ type: T.Type) throws(QueueError) -> T? {
            guard let record = try peek() else { return nil }
            return try takeValue(record, as: type)
        }

        func takeValue<T: BitwiseCopyable>(_ record: (offset: Int, length: Int, next: UInt64), as: T.Type) throws(QueueError) -> T {
            guard record.length == MemoryLayout<T>.size else {
                release(next: record.next)
                throw .sizeMismatch(expected: MemoryLayout<T>.size, actual: record.length)
            }
            let value = (ring.data + record.offset).loadUnaligned(as: T.self)
            release(next: record.next)
            return value
        }

        func copyOut(_ record: (offset: Int, length: Int, next: UInt64), into buffer: UnsafeMutableRawBufferPointer) throws(QueueError) -> Int {
            guard record.length <= buffer.count else { throw .bufferTooSmall(needed: record.length, available: buffer.count) }
            if record.length > 0 { buffer.baseAddress!.copyMemory(from: ring.data + record.offset, byteCount: record.length) }
            release(next: record.next)
            return record.length
        }

        func takeArray(_ record: (offset: Int, length: Int, next: UInt64)) -> [UInt8] {
            let bytes = Array(UnsafeRawBufferPointer(start: ring.data + record.offset, count: record.length))
            release(next: record.next)
            return bytes
        }

        // MARK: Zero-copy receives

        /// Lends the next message in place to `body`, then frees its bytes.
        public func receive<R, E: Error>(timeout: Duration? = nil, _ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(ReceiveError<E>) -> R {
            let found: (offset: Int, length: Int, next: UInt64)?
            do { found = try peekWaiting(timeout: timeout) } catch { throw .queue(error) }
            guard let record = found else { throw .queue(.timedOut(timeout)) }
            defer { release(next: record.next) }
            do { return try body(UnsafeRawBufferPointer(start: ring.data + record.offset, count: record.length)) }
            catch { throw .body(error) }
        }

        /// The next message in place, if there is one. Its bytes stay valid
        /// until it is released (or dropped); one message may be out at a time.
        public func tryRead() throws(QueueError) -> RingMessage? {
            guard let record = try peek() else { return nil }
            lentOut = true
            return RingMessage(consumer: self, next: record.next,
                               bytes: UnsafeRawBufferPointer(start: ring.data + record.offset, count: record.length))
        }

        /// The next message in place, waiting at most `timeout`.
        public func read(timeout: Duration? = nil) throws(QueueError) -> RingMessage {
            guard let record = try peekWaiting(timeout: timeout) else { throw .timedOut(timeout) }
            lentOut = true
            return RingMessage(consumer: self, next: record.next,
                               bytes: UnsafeRawBufferPointer(start: ring.data + record.offset, count: record.length))
        }

        /// Hands up to `limit` waiting messages to `body` in place and frees
        /// them all with one store at the end (the fast path for draining a
        /// busy ring). Returns how many were handled; does not wait.
        @discardableResult
        public func drain(limit: Int = .max, _ body: (UnsafeRawBufferPointer) -> Void) throws(QueueError) -> Int {
            var handled = 0
            var next = head
            while handled < limit {
                if next == cachedTail {
                    // SYNC POINT: acquire pairs with the producer's seq_cst store of tail.
                    let t = ring.tail.pointee.load(ordering: .acquiring)
                    guard ring.positionsAreSane(head: head, tail: t), t & 7 == 0 else {
                        if handled > 0 { release(next: next) }
                        throw .corruptIndices("tail \(t) read from shared memory, our head \(head), capacity \(ring.capacity)")
                    }
                    cachedTail = t
                    if next == t { break }
                }
                let offset = Int(next & ring.mask)
                let at = ring.data + offset
                let length = Int(at.load(as: UInt32.self))
                let type = at.load(fromByteOffset: 4, as: UInt32.self)
                let available = Int(cachedTail &- next)
                let room = ring.capacity - offset
                if type == SPSCRing.typeMessage {
                    let size = SPSCRing.align8(SPSCRing.recordHeader + length)
                    guard length <= ring.maxMessageSize, size <= room, size <= available else { break }
                    body(UnsafeRawBufferPointer(start: at + SPSCRing.recordHeader, count: length))
                    next &+= UInt64(size)
                    handled += 1
                } else if type == SPSCRing.typePadding, length == room - SPSCRing.recordHeader, room <= available {
                    next &+= UInt64(room)
                } else {
                    break
                }
            }
            if next != head { release(next: next) }
            if handled < limit, next != cachedTail {
                // Stopped at a record that failed validation: report it like peek does.
                _ = try peek()
            }
            return handled
        }

        /// Waits until a message is available (without taking it).
        public func waitForMessage(timeout: Duration? = nil) throws(QueueError) -> Bool {
            try peekWaiting(timeout: timeout) != nil
        }

        func readReleased(next: UInt64) {
            lentOut = false
            release(next: next)
        }
    }
}

/// Why a zero-copy `receive(_:)` failed: the ring, or the caller's body.
public enum ReceiveError<Failure: Error>: Error {
    case queue(QueueError)
    case body(Failure)
}

/// A message read in place from a ring. Its bytes are valid until it is
/// released; releasing (or dropping) it frees the space for the producer.
public struct RingMessage: ~Copyable {
    let consumer: SPSCRing.Consumer
    let next: UInt64
    /// The message, in shared memory.
    public let bytes: UnsafeRawBufferPointer

    init(consumer: SPSCRing.Consumer, next: UInt64, bytes: UnsafeRawBufferPointer) {
        self.consumer = consumer
        self.next = next
        self.bytes = bytes
    }

    /// Frees the message's bytes (the same as dropping it).
    public consuming func release() {}

    deinit { consumer.readReleased(next: next) }
}
