import Synchronization
import ShmSystem
@_spi(ShmInternals) import ShmPrimitives

/// Waits from `async` code, through the one bridge (`AsyncBridge`), until
/// `ready()` holds, the timeout passes, or the task is cancelled (which
/// wakes the futex at once). The waiting itself is the handle's `Waiter`,
/// slice by slice, carried to the waiting thread and back: returns whether
/// `ready()` held and the waiter with what the wait taught it, for the
/// caller to store back in its port.
func waitOffThePool(parker: Parker, waiter: Waiter, timeout: Duration?,
                    ready: @escaping @Sendable () -> Bool) async throws -> (found: Bool, waiter: Waiter) {
    let carried = HandleWaiter(continuing: waiter)
    let found = try await AsyncBridge.wait(wakingOnCancel: [parker], deadline: deadline(after: timeout)) {
        (until: UInt64) throws(Never) -> Bool? in
        carried.withWaiter { (waiter: inout Waiter) in waiter.wait(on: parker, deadline: until, ready: ready) } ? true : nil
    }
    return (found ?? ready(), carried.current)
}

extension SubscriberPort {
    /// One wait from `async` code, off the cooperative pool, until a
    /// message may be waiting in this inbox (a subscriber's samples, a
    /// server's requests, a client's responses) or `end` passes; the port's
    /// waiter carries what the wait taught it back.
    /// - Throws: `.timedOut(timeout)` once `end` has passed; `CancellationError`.
    func awaitMessage(until end: UInt64?, timeout: Duration?) async throws {
        let remaining: Duration? = end.map { .nanoseconds(Int64(bitPattern: max(0, $0 &- monotonicNanoseconds()))) }
        if let remaining, remaining <= .zero { throw ServiceError.timedOut(after: timeout) }
        waiter = try await waitOffThePool(parker: inbox.parker, waiter: waiter, timeout: remaining) { [self] in
            mayHaveSample()
        }.waiter
    }
}

extension Subscriber {
    /// Waits from `async` code for the next sample (the wait runs on a
    /// dedicated thread; the sample is taken on the calling task).
    public func receive(timeout: Duration? = nil) async throws -> ReceivedSample<Payload> {
        let end = deadline(after: timeout)
        while true {
            if let sample = try tryReceive() { return sample }
            try await port.awaitMessage(until: end, timeout: timeout)
        }
    }

    /// Copies of the payloads as they arrive (single-value services), for
    /// `for try await`; ends when the task is cancelled.
    public var values: AsyncValues<Payload> { AsyncValues(subscriber: self, slices: false) }

    /// Copies of the payload slices as they arrive (slice services).
    public var slices: AsyncSlices<Payload> { AsyncSlices(subscriber: self) }
}

/// `for try await value in subscriber.values`
public struct AsyncValues<Payload: BitwiseCopyable>: AsyncSequence, Sendable {
    public typealias Element = Payload
    let subscriber: Subscriber<Payload>
    let slices: Bool

    public struct AsyncIterator: AsyncIteratorProtocol {
        let subscriber: Subscriber<Payload>
        public mutating func next() async throws -> Payload? {
            do {
                let sample = try await subscriber.receive()
                return sample.payload
            } catch is CancellationError {
                return nil
            }
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(subscriber: subscriber) }
}

/// `for try await slice in subscriber.slices`
public struct AsyncSlices<Payload: BitwiseCopyable>: AsyncSequence, Sendable {
    public typealias Element = [Payload]
    let subscriber: Subscriber<Payload>

    public struct AsyncIterator: AsyncIteratorProtocol {
        let subscriber: Subscriber<Payload>
        public mutating func next() async throws -> [Payload]? {
            do {
                let sample = try await subscriber.receive()
                return Array(sample.unsafeBuffer)
            } catch is CancellationError {
                return nil
            }
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(subscriber: subscriber) }
}

extension Listener {
    /// Waits from `async` code for any event id to fire (empty on timeout).
    public func wait(timeout: Duration? = nil) async throws -> [EventID] {
        let ids = tryWait()
        if !ids.isEmpty { return ids }
        waiter = try await waitOffThePool(parker: event.parker, waiter: waiter, timeout: timeout) { [self] in hasFired() }.waiter
        return tryWait()
    }

    /// Event ids as they fire, for `for try await`; ends on cancellation.
    public var events: AsyncEvents { AsyncEvents(listener: self) }
}

/// `for try await id in listener.events`
public struct AsyncEvents: AsyncSequence, Sendable {
    public typealias Element = EventID
    let listener: Listener

    public struct AsyncIterator: AsyncIteratorProtocol {
        let listener: Listener
        var pending: [EventID] = []
        public mutating func next() async throws -> EventID? {
            while pending.isEmpty {
                do { pending = try await listener.wait() } catch is CancellationError { return nil }
            }
            return pending.removeFirst()
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(listener: listener) }
}

extension WaitSet {
    /// Waits from `async` code (on a dedicated thread) for ready attachments.
    public func wait(timeout: Duration? = nil) async throws -> [Attachment] {
        let now = ready()
        if !now.isEmpty { return now }
        let waitSet = SendableBox(self)
        let result = try await AsyncBridge.wait(wakingOnCancel: entries.map(\.parker), deadline: deadline(after: timeout)) {
            (until: UInt64) throws(ServiceError) -> [Int]? in
            let ready = try waitSet.value.wait(timeout: AsyncBridge.remaining(until: until))
            return ready.isEmpty ? nil : ready.map(\.index)
        } ?? []
        return result.map(Attachment.init)
    }
}

struct SendableBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

extension PendingResponse {
    /// The next response (copied), waited for from `async` code on a
    /// dedicated thread (cancelling the task ends the wait with
    /// `CancellationError` at once).
    public func next(timeout: Duration? = .seconds(1)) async throws -> (value: Response, isFinal: Bool) {
        let end = deadline(after: timeout)
        let port = client.port
        while true {
            do throws(ServiceError) {
                if port.mayHaveResponse() {
                    let (value, final) = try client.next(for: requestID, timeout: .zero)
                    return (value, final)
                }
            } catch {
                guard case .timedOut = error else { throw error }
            }
            try await port.responses.awaitMessage(until: end, timeout: timeout)
        }
    }
}

extension Server {
    /// The next request (copied), waited for from `async` code on a
    /// dedicated thread.
    public func receive(timeout: Duration? = nil) async throws -> ActiveRequest<Request, Response> {
        let end = deadline(after: timeout)
        while true {
            if let request = try tryReceive() { return request }
            try await port.requests.awaitMessage(until: end, timeout: timeout)
        }
    }
}
