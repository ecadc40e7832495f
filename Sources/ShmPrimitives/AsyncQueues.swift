import Synchronization
import ShmSystem

/// A flag a cancelled task sets for the pool thread waiting on its behalf.
final class CancellationFlag: Sendable {
    let cancelled = Atomic<Bool>(false)
    var isCancelled: Bool { cancelled.load(ordering: .acquiring) }
    func cancel() { cancelled.store(true, ordering: .releasing) }
}

/// How long a pool thread sleeps at most before looking at its task's
/// cancellation flag again (cancellation also wakes it at once).
let asyncWaitSlice: Duration = .milliseconds(50)

// MARK: - SPSC ring

extension SPSCRing.Consumer {
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
        let flag = CancellationFlag()
        let end = deadline(after: timeout)
        let parker = view.dataParker
        let arrived = try await withTaskCancellationHandler {
            try await BlockingPool.shared.run { () throws(QueueError) -> Bool in
                while !flag.isCancelled {
                    let now = monotonicNanoseconds()
                    if let end, now >= end { return false }
                    let slice = min(end.map { $0 - now } ?? .max, asyncWaitSlice.nanoseconds)
                    if try self.waitForMessage(timeout: .nanoseconds(Int64(slice))) { return true }
                }
                return false
            }
        } onCancel: {
            flag.cancel()
            parker.wake(count: Int32.max) // we are the only sleeper on this parker
        }
        try Task.checkCancellation()
        if !arrived { throw QueueError.timedOut(timeout) }
    }

    /// The messages arriving on this ring, as copies, for `for try await`.
    /// The sequence ends when the iterating task is cancelled.
    public var messages: RingMessages { RingMessages(consumer: self) }
}

/// `for try await message in consumer.messages { … }`
public struct RingMessages: AsyncSequence, Sendable {
    public typealias Element = [UInt8]
    let consumer: SPSCRing.Consumer

    public struct AsyncIterator: AsyncIteratorProtocol {
        let consumer: SPSCRing.Consumer

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

extension SPSCRing.Producer {
    /// Sends `bytes` from `async` code, waiting for room on a dedicated
    /// thread (never on the cooperative pool) if the ring is full.
    /// Cancelling the task ends the wait with `CancellationError`.
    public func send(_ bytes: [UInt8], timeout: Duration? = nil) async throws {
        let end = deadline(after: timeout)
        while true {
            if try trySend(bytes) { return }
            let flag = CancellationFlag()
            let parker = view.spaceParker
            let count = bytes.count
            let room = try await withTaskCancellationHandler {
                try await BlockingPool.shared.run { () throws(QueueError) -> Bool in
                    while !flag.isCancelled {
                        let now = monotonicNanoseconds()
                        if let end, now >= end { return false }
                        let slice = min(end.map { $0 - now } ?? .max, asyncWaitSlice.nanoseconds)
                        if try self.waitForSpace(count: count, timeout: .nanoseconds(Int64(slice))) { return true }
                    }
                    return false
                }
            } onCancel: {
                flag.cancel()
                parker.wake(count: Int32.max) // we are the only sleeper on this parker
            }
            try Task.checkCancellation()
            if !room { throw QueueError.timedOut(timeout) }
        }
    }
}

// MARK: - MPMC queue

extension MPMCQueue {
    /// Dequeues a message from `async` code, waiting on a dedicated thread
    /// if the queue is empty. Cancelling ends the wait with `CancellationError`.
    public func dequeue(timeout: Duration? = nil, strategy: WaitStrategy = .default) async throws -> [UInt8] {
        let flag = CancellationFlag()
        let end = deadline(after: timeout)
        let parker = notEmpty
        let message = try await withTaskCancellationHandler {
            try await BlockingPool.shared.run { () throws(QueueError) -> [UInt8]? in
                while !flag.isCancelled {
                    let now = monotonicNanoseconds()
                    if let end, now >= end { return nil }
                    let slice = min(end.map { $0 - now } ?? .max, asyncWaitSlice.nanoseconds)
                    do throws(QueueError) {
                        return try self.dequeue(timeout: .nanoseconds(Int64(slice)), strategy: strategy)
                    } catch .timedOut {
                        continue
                    }
                }
                return nil
            }
        } onCancel: {
            flag.cancel()
            parker.wake(count: Int32.max) // spurious wake-ups are harmless to other waiters
        }
        try Task.checkCancellation()
        guard let message else { throw QueueError.timedOut(timeout) }
        return message
    }

    /// Enqueues from `async` code, waiting on a dedicated thread if full.
    public func enqueue(_ bytes: [UInt8], timeout: Duration? = nil, strategy: WaitStrategy = .default) async throws {
        if try tryEnqueue(bytes) { return }
        let flag = CancellationFlag()
        let end = deadline(after: timeout)
        let parker = notFull
        let done = try await withTaskCancellationHandler {
            try await BlockingPool.shared.run { () throws(QueueError) -> Bool in
                while !flag.isCancelled {
                    let now = monotonicNanoseconds()
                    if let end, now >= end { return false }
                    let slice = min(end.map { $0 - now } ?? .max, asyncWaitSlice.nanoseconds)
                    do throws(QueueError) {
                        try self.enqueue(bytes, timeout: .nanoseconds(Int64(slice)), strategy: strategy)
                        return true
                    } catch .timedOut {
                        continue
                    }
                }
                return false
            }
        } onCancel: {
            flag.cancel()
            parker.wake(count: Int32.max)
        }
        try Task.checkCancellation()
        if !done { throw QueueError.timedOut(timeout) }
    }
}
