import Synchronization
import ShmSystem

// MARK: - SPSC ring

extension MessageRing.Consumer {
    /// Waits for a message from `async` code and returns a copy of it.
    ///
    /// If one is there it is taken at once; otherwise the wait happens on a
    /// dedicated thread (never on the cooperative pool) that parks on the
    /// ring's futex. Cancelling the task ends the wait promptly with
    /// `CancellationError`.
    public func receive(timeout: Duration? = nil) async throws -> [UInt8] {
        while true {
            if let message = try tryReceive() { return message }
            try await waitForMessageAsync(timeout: timeout)
        }
    }

    /// Waits (on a pool thread) until a message is there or `timeout` passes.
    func waitForMessageAsync(timeout: Duration?) async throws {
        let arrived = try await AsyncBridge.wait(wakingOnCancel: [view.dataParker], deadline: deadline(after: timeout)) {
            (until: UInt64) throws(QueueError) -> Bool? in
            try self.waitForMessage(timeout: AsyncBridge.remaining(until: until)) ? true : nil
        }
        if arrived == nil { throw QueueError.timedOut(after: timeout) }
    }

    /// The messages arriving on this ring, as copies, for `for try await`.
    /// The sequence ends when the iterating task is cancelled.
    public var messages: RingMessages { RingMessages(consumer: self) }
}

/// `for try await message in consumer.messages { … }`
public struct RingMessages: AsyncSequence, Sendable {
    public typealias Element = [UInt8]
    let consumer: MessageRing.Consumer

    public struct AsyncIterator: AsyncIteratorProtocol {
        let consumer: MessageRing.Consumer

        public mutating func next() async throws -> [UInt8]? {
            do {
                return try await consumer.receive()
            } catch is CancellationError {
                return nil
            }
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(consumer: consumer) }
}

extension MessageRing.Producer {
    /// Sends `bytes` from `async` code, waiting for room on a dedicated
    /// thread (never on the cooperative pool) if the ring is full.
    /// Cancelling the task ends the wait with `CancellationError`.
    public func send(_ bytes: [UInt8], timeout: Duration? = nil) async throws {
        let end = deadline(after: timeout)
        while true {
            if try trySend(bytes) { return }
            let count = bytes.count
            let room = try await AsyncBridge.wait(wakingOnCancel: [view.spaceParker], deadline: end) {
                (until: UInt64) throws(QueueError) -> Bool? in
                try self.waitForSpace(count: count, timeout: AsyncBridge.remaining(until: until)) ? true : nil
            }
            if room == nil { throw QueueError.timedOut(after: timeout) }
        }
    }
}

// MARK: - MPMC queue

extension MessageQueue {
    /// Receives a message from `async` code, waiting on a dedicated thread
    /// if the queue is empty. Cancelling ends the wait with `CancellationError`.
    public func receive(timeout: Duration? = nil) async throws -> [UInt8] {
        let message = try await AsyncBridge.wait(wakingOnCancel: [notEmpty], deadline: deadline(after: timeout)) {
            (until: UInt64) throws(QueueError) -> [UInt8]? in
            do throws(QueueError) {
                return try self.receive(timeout: AsyncBridge.remaining(until: until))
            } catch .timedOut {
                return nil
            }
        }
        guard let message else { throw QueueError.timedOut(after: timeout) }
        return message
    }

    /// Sends from `async` code, waiting on a dedicated thread if full.
    public func send(_ bytes: [UInt8], timeout: Duration? = nil) async throws {
        if try trySend(bytes) { return }
        let done = try await AsyncBridge.wait(wakingOnCancel: [notFull], deadline: deadline(after: timeout)) {
            (until: UInt64) throws(QueueError) -> Bool? in
            do throws(QueueError) {
                try self.send(bytes, timeout: AsyncBridge.remaining(until: until))
                return true
            } catch .timedOut {
                return nil
            }
        }
        if done == nil { throw QueueError.timedOut(after: timeout) }
    }
}
