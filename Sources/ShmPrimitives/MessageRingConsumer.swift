import Synchronization
import ShmSystem

extension MessageRing {
    /// The reading end of an `MessageRing`. One per ring across all processes;
    /// use it from one thread at a time.
    public final class Consumer: @unchecked Sendable {
        public let ring: MessageRing
        @usableFromInline let view: RingView
        /// This process's private state (see `Producer.local`).
        @usableFromInline let local: UnsafeMutablePointer<Local>
        @usableFromInline var waiter: Waiter

        @usableFromInline
        struct Local {
            /// Our authoritative copy of `head` (only we write the shared one).
            @usableFromInline var head: UInt64
            @usableFromInline var lentOut: Bool
        }

        @inlinable var head: UInt64 {
            get { local.pointee.head }
            set { local.pointee.head = newValue }
        }
        @inlinable var lentOut: Bool {
            get { local.pointee.lentOut }
            set { local.pointee.lentOut = newValue }
        }

        init(ring: MessageRing, waitStrategy: WaitStrategy) throws(QueueError) {
            try ring.consumerSlot.claim(role: "consumer")
            let view = ring.view
            // SYNC POINT: acquire pairs with the stores of head/tail.
            let h = view.head.pointee.load(ordering: .acquiring)
            let t = view.tail.pointee.load(ordering: .acquiring)
            guard view.positionsAreSane(head: h, tail: t), h & 15 == 0 else {
                ring.consumerSlot.release()
                throw .corruptIndices("head \(h), tail \(t), capacity \(view.capacity)")
            }
            self.ring = ring
            self.view = view
            self.local = .allocate(capacity: 1)
            self.local.initialize(to: Local(head: h, lentOut: false))
            self.waiter = Waiter(waitStrategy)
            view.dataParker.resetSleepers() // a dead consumer may have left itself counted
            // SYNC POINT: seq_cst stores pair with the producer's seq_cst load of
            // `consumerMayPark` before it chooses release or seq_cst publication.
            if waitStrategy.neverParks { view.consumerMayPark.pointee.store(0, ordering: .sequentiallyConsistent) }
            else { view.consumerMayPark.pointee.store(1, ordering: .sequentiallyConsistent) }
        }

        deinit {
            // SYNC POINT: as in `init`: a consumer taking over may sleep.
            view.consumerMayPark.pointee.store(1, ordering: .sequentiallyConsistent)
            ring.consumerSlot.release()
            local.deallocate()
        }

        /// What a valid header word at `offset` describes.
        @usableFromInline
        enum Record {
            case message(length: Int, size: Int)
            case padding(size: Int)
            case invalid(String)
        }

        @inlinable @inline(__always)
        func decode(_ word: UInt64, at offset: Int) -> Record {
            let length = Int(word & 0xffff_ffff)
            let room = view.capacity - offset
            switch word >> 32 {
            case MessageRing.typeMessage:
                let size = MessageRing.recordSize(length)
                guard length <= view.maxMessageSize, size <= room else {
                    return .invalid("message length \(length) does not fit in the \(room) bytes to the end")
                }
                return .message(length: length, size: size)
            case MessageRing.typePadding:
                guard offset > 0, length == room - MessageRing.recordHeader else {
                    return .invalid("padding of \(length) bytes at \(offset) does not reach the end")
                }
                return .padding(size: room)
            default:
                return .invalid("unknown record type \(word >> 32)")
            }
        }

        /// The meta word of the record at `position` if it is published.
        @inlinable @inline(__always)
        func published(at position: UInt64, offset: Int) -> UInt64? {
            // SYNC POINT: acquire pairs with the producer's release (or
            // seq_cst) store of this tag in `Producer.store`: the meta word
            // and payload written before it are visible.
            guard view.tagWord(at: offset).pointee.load(ordering: .acquiring) == view.tag(position) else { return nil }
            return (view.data + offset).load(fromByteOffset: MessageRing.RecordOffset.meta, as: UInt64.self)
        }

        /// The next record's payload position, length and the head after it,
        /// or nil if nothing is published. Skips padding records.
        @inlinable @inline(__always)
        func peek() throws(QueueError) -> (offset: Int, length: Int, next: UInt64)? {
            precondition(!lentOut, "the previous message has not been released")
            while true {
                let offset = Int(head & view.mask)
                guard let word = published(at: head, offset: offset) else { return nil }
                switch decode(word, at: offset) {
                case .message(let length, let size):
                    return (offset + MessageRing.recordHeader, length, head &+ UInt64(size))
                case .padding(let size):
                    head &+= UInt64(size)
                    publishHead()
                case .invalid(let reason):
                    try skipCorrupt(at: offset, reason)
                }
            }
        }

        /// After a corrupt record: drop everything up to the producer's
        /// published position.
        @usableFromInline @inline(never)
        func skipCorrupt(at offset: Int, _ reason: String) throws(QueueError) -> Never {
            view.lost.pointee.wrappingAdd(1, ordering: .relaxed)
            // SYNC POINT: acquire pairs with the producer's release store of tail.
            let t = view.tail.pointee.load(ordering: .acquiring)
            guard view.positionsAreSane(head: head, tail: t), t & 15 == 0 else {
                throw .corruptIndices("tail \(t) read from shared memory, our head \(head), capacity \(view.capacity)")
            }
            if t != head {
                head = t
                publishHead()
            }
            throw .corruptRecord(offset: offset, reason: reason + "; skipped to the write position")
        }

        @inlinable @inline(__always)
        func release(next: UInt64) {
            head = next
            publishHead()
        }

        @inlinable @inline(__always)
        func publishHead() {
            if view.producerMayPark.pointee.load(ordering: .relaxed) != 0 {
                // SYNC POINT: release (seq_cst) pairs with the producer's
                // acquire load of head in `Producer.reserve`; seq_cst for the
                // Dekker handshake with `Parker.sleep`.
                view.head.pointee.store(head, ordering: .sequentiallyConsistent)
                view.spaceParker.wakeIfSleeping()
            } else {
                // SYNC POINT: release pairs with the producer's acquire load
                // of head in `Producer.reserve` (it busy-spins, never sleeps).
                view.head.pointee.store(head, ordering: .releasing)
            }
        }

        /// Waits for a record; returns nil at the deadline.
        @inlinable @inline(__always)
        func peekWaiting(timeout: Duration?) throws(QueueError) -> (offset: Int, length: Int, next: UInt64)? {
            if let found = try peek() { return found }
            return try peekSlowly(timeout: timeout)
        }

        @usableFromInline @inline(never)
        func peekSlowly(timeout: Duration?) throws(QueueError) -> (offset: Int, length: Int, next: UInt64)? {
            let view = self.view, offset = Int(head & view.mask), expected = view.tag(head)
            _ = waiter.wait(on: view.dataParker, deadline: deadline(after: timeout)) {
                // SYNC POINT (Dekker): seq_cst load pairs with the producer's seq_cst tag
                // store and its sleeper check (`Parker`).
                view.tagWord(at: offset).pointee.load(ordering: .sequentiallyConsistent) == expected
            }
            return try peek()
        }

        // MARK: Copying receives

        /// Copies the next message into `buffer` if one is there; returns its
        /// length, or nil if the ring is empty. A message larger than the
        /// buffer stays queued (`bufferTooSmall`).
        @inlinable
        public func tryReceive(into buffer: UnsafeMutableRawBufferPointer) throws(QueueError) -> Int? {
            guard let record = try peek() else { return nil }
            return try copyOut(record, into: buffer)
        }

        /// Copies the next message into `buffer`, waiting at most `timeout`.
        @inlinable
        public func receive(into buffer: UnsafeMutableRawBufferPointer, timeout: Duration? = nil) throws(QueueError) -> Int {
            guard let record = try peekWaiting(timeout: timeout) else { throw .timedOut(after: timeout) }
            return try copyOut(record, into: buffer)
        }

        /// The next message as a new array (allocates), or nil if empty.
        public func tryReceive() throws(QueueError) -> [UInt8]? {
            guard let record = try peek() else { return nil }
            return takeArray(record)
        }

        /// The next message as a new array (allocates), waiting at most `timeout`.
        public func receive(timeout: Duration? = nil) throws(QueueError) -> [UInt8] {
            guard let record = try peekWaiting(timeout: timeout) else { throw .timedOut(after: timeout) }
            return takeArray(record)
        }

        /// The next message as a value of a trivially copyable type, read in
        /// place; the message must be exactly `MemoryLayout<T>.size` bytes.
        @inlinable
        public func receive<T: BitwiseCopyable>(_ type: T.Type, timeout: Duration? = nil) throws(QueueError) -> T {
            guard let record = try peekWaiting(timeout: timeout) else { throw .timedOut(after: timeout) }
            return try takeValue(record, as: type)
        }

        /// Like `receive(_:timeout:)` without waiting.
        @inlinable
        public func tryReceive<T: BitwiseCopyable>(_ type: T.Type) throws(QueueError) -> T? {
            guard let record = try peek() else { return nil }
            return try takeValue(record, as: type)
        }

        @inlinable
        func takeValue<T: BitwiseCopyable>(_ record: (offset: Int, length: Int, next: UInt64), as: T.Type) throws(QueueError) -> T {
            guard record.length == MemoryLayout<T>.size else {
                release(next: record.next)
                throw .sizeMismatch(expected: MemoryLayout<T>.size, actual: record.length)
            }
            let value = (view.data + record.offset).loadUnaligned(as: T.self)
            release(next: record.next)
            return value
        }

        @inlinable
        func copyOut(_ record: (offset: Int, length: Int, next: UInt64), into buffer: UnsafeMutableRawBufferPointer) throws(QueueError) -> Int {
            guard record.length <= buffer.count else { throw .bufferTooSmall(needed: record.length, available: buffer.count) }
            if record.length > 0 { buffer.baseAddress!.copyMemory(from: view.data + record.offset, byteCount: record.length) }
            release(next: record.next)
            return record.length
        }

        func takeArray(_ record: (offset: Int, length: Int, next: UInt64)) -> [UInt8] {
            let bytes = Array(UnsafeRawBufferPointer(start: view.data + record.offset, count: record.length))
            release(next: record.next)
            return bytes
        }

        // MARK: Zero-copy receives

        /// Lends the next message in place to `body`, then frees its bytes.
        @inlinable
        public func receive<R, E: Error>(timeout: Duration? = nil, _ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(ReceiveError<E>) -> R {
            let found: (offset: Int, length: Int, next: UInt64)?
            do { found = try peekWaiting(timeout: timeout) } catch { throw .queue(error) }
            guard let record = found else { throw .queue(.timedOut(after: timeout)) }
            defer { release(next: record.next) }
            do { return try body(UnsafeRawBufferPointer(start: view.data + record.offset, count: record.length)) }
            catch { throw .body(error) }
        }

        /// The next message in place, if there is one. Its bytes stay valid
        /// until it is released (or dropped); one message may be out at a time.
        public func tryRead() throws(QueueError) -> RingMessage? {
            guard let record = try peek() else { return nil }
            lentOut = true
            return RingMessage(consumer: self, next: record.next,
                               bytes: UnsafeRawBufferPointer(start: view.data + record.offset, count: record.length))
        }

        /// The next message in place, waiting at most `timeout`.
        public func read(timeout: Duration? = nil) throws(QueueError) -> RingMessage {
            guard let record = try peekWaiting(timeout: timeout) else { throw .timedOut(after: timeout) }
            lentOut = true
            return RingMessage(consumer: self, next: record.next,
                               bytes: UnsafeRawBufferPointer(start: view.data + record.offset, count: record.length))
        }

        /// Hands up to `limit` waiting messages to `body` in place and frees
        /// them all with one store at the end (the fast path for draining a
        /// busy ring). Returns how many were handled; does not wait.
        ///
        /// Polling an empty ring pulls the cache line the producer is writing
        /// away from it; when `drain` returns 0 on a busy stream, back off a
        /// little before calling again so the producer can write a batch.
        @inlinable @discardableResult
        public func drain(limit: Int = .max, _ body: (UnsafeRawBufferPointer) -> Void) throws(QueueError) -> Int {
            precondition(!lentOut, "the previous message has not been released")
            var handled = 0
            var next = head
            while handled < limit {
                let offset = Int(next & view.mask)
                guard let word = published(at: next, offset: offset) else { break }
                switch decode(word, at: offset) {
                case .message(let length, let size):
                    body(UnsafeRawBufferPointer(start: view.data + offset + MessageRing.recordHeader, count: length))
                    next &+= UInt64(size)
                    handled += 1
                case .padding(let size):
                    next &+= UInt64(size)
                case .invalid(let reason):
                    if next != head { release(next: next) }
                    try skipCorrupt(at: offset, reason)
                }
            }
            if next != head { release(next: next) }
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
    let consumer: MessageRing.Consumer
    let next: UInt64
    /// The message, in shared memory (valid until released).
    public let unsafeBytes: UnsafeRawBufferPointer

    /// Bytes in the message.
    public var count: Int { unsafeBytes.count }

    @available(*, deprecated, renamed: "unsafeBytes")
    public var bytes: UnsafeRawBufferPointer { unsafeBytes }

    init(consumer: MessageRing.Consumer, next: UInt64, bytes: UnsafeRawBufferPointer) {
        self.consumer = consumer
        self.next = next
        self.unsafeBytes = bytes
    }

    /// Frees the message's bytes (the same as dropping it).
    public consuming func release() {}

    deinit { consumer.readReleased(next: next) }
}
