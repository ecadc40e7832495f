import ShmSystem
@_spi(ShmInternals) import ShmPrimitives

/// Waits on several listeners, subscribers and servers at once.
///
/// ```swift
/// let waitSet = WaitSet()
/// let alarms = waitSet.attach(listener)
/// let frames = waitSet.attach(subscriber)
/// for ready in try waitSet.wait(timeout: .seconds(1)) {
///     if ready == frames { while let frame = try subscriber.receive() { … } }
/// }
/// ```
///
/// Each attachment exposes the futex word its wakers bump. A wait runs the
/// wait set's strategy like any port's (`Waiter`: spin for an adaptive
/// budget under `.spinThenPark`); to sleep it announces itself as a sleeper
/// on every word, re-checks each attachment, and sleeps in one
/// `futex_waitv(2)` call on all the words (up to 128).
public final class WaitSet: @unchecked Sendable {
    /// Identifies an attachment in the results of `wait`.
    public struct Attachment: Hashable, Sendable {
        public let index: Int
    }

    struct Entry {
        let parker: Parker
        let isReady: () -> Bool
        let refresh: () -> Void
        let keepAlive: AnyObject
        /// A read-only form of `isReady` for `Readiness`'s helper thread.
        let watch: () -> Readiness.Watch
    }

    var entries: [Entry] = []
    var waiter: Waiter

    /// How `wait` waits (spin, then sleep on every attachment — the
    /// default —, only spin, or only sleep).
    public var waitStrategy: WaitStrategy { waiter.strategy }

    public init(waitStrategy: WaitStrategy = .default) {
        waiter = Waiter(waitStrategy)
    }

    /// Attaches a listener: ready when any of its event ids fired.
    public func attach(_ listener: Listener) -> Attachment {
        add(Entry(parker: listener.event.parker, isReady: { listener.hasFired() }, refresh: {}, keepAlive: listener,
                  watch: { listener.readOnlyWatch() }))
    }

    /// Attaches a subscriber: ready when a sample may be waiting.
    public func attach<P: BitwiseCopyable>(_ subscriber: Subscriber<P>) -> Attachment {
        let port = subscriber.port
        return add(Entry(parker: port.inbox.parker, isReady: { port.hasSample() },
                         refresh: { port.updateConnections() }, keepAlive: subscriber, watch: { port.readOnlyWatch() }))
    }

    /// Attaches a server: ready when a request is waiting.
    public func attach<Q: BitwiseCopyable, R: BitwiseCopyable>(_ server: Server<Q, R>) -> Attachment {
        attach(server.port, keepAlive: server)
    }

    /// Attaches a server's port (the C ABI's byte-sized servers).
    package func attach(_ port: ServerPort, keepAlive: AnyObject) -> Attachment {
        let inbox = port.requests
        return add(Entry(parker: inbox.inbox.parker, isReady: { inbox.hasSample() },
                         refresh: { inbox.updateConnections() }, keepAlive: keepAlive, watch: { inbox.readOnlyWatch() }))
    }

    /// How many attachments the wait set holds.
    public var count: Int { entries.count }

    /// A descriptor that becomes readable when an attachment may be ready,
    /// for the caller's own event loop (see `Readiness`): on readability call
    /// `ready()` (or `wait(timeout: .zero)`), handle what it returns, then
    /// `rearm()` — which also takes in attachments added since. Keep the
    /// returned object as long as the descriptor is used.
    public func makeReadiness() throws(ServiceError) -> Readiness {
        try Readiness(name: "wait set") { [weak self] in self?.entries.map { $0.watch() } ?? [] }
    }

    func add(_ entry: Entry) -> Attachment {
        precondition(entries.count < 128, "a wait set holds at most 128 attachments")
        entries.append(entry)
        return Attachment(index: entries.count - 1)
    }

    /// The attachments that are ready now, without waiting.
    public func ready() -> [Attachment] {
        entries.indices.filter { entries[$0].isReady() }.map(Attachment.init)
    }

    /// Waits at most `timeout` until at least one attachment is ready;
    /// returns the ready ones (empty on timeout).
    public func wait(timeout: Duration? = nil) throws(ServiceError) -> [Attachment] {
        guard !entries.isEmpty else { throw .invalidConfiguration("the wait set has no attachments") }
        let end = deadline(after: timeout)
        while true {
            // Take in new publishers first, so that their arrival is not mistaken for data.
            for entry in entries { entry.refresh() }
            let entries = self.entries
            var w = waiter // a local copy, stored back: no access to the wait set held across the wait
            let found = w.wait(onAny: entries.map(\.parker), deadline: end) { entries.contains { $0.isReady() } }
            waiter = w
            if found {
                let ready = self.ready()
                if !ready.isEmpty { return ready }
            }
            if let end, monotonicNanoseconds() >= end { return [] }
        }
    }
}
