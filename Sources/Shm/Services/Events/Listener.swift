import ShmSystem
@_spi(ShmInternals) import ShmPrimitives

/// Waits for event ids on an event service.
public final class Listener: @unchecked Sendable {
    public let service: EventService
    public let portID: UInt64
    let slotIndex: Int
    let event: SharedEvent
    let strategy: WaitStrategy
    /// This listener's waits: its spin budget adapts across calls.
    var waiter: Waiter
    var seen: [UInt64]

    init(service: EventService, waitStrategy: WaitStrategy) throws(ServiceError) {
        self.service = service
        portID = UInt64.random(in: 1...UInt64.max)
        event = service.event
        strategy = waitStrategy
        waiter = Waiter(waitStrategy)
        seen = service.counters.snapshot()
        slotIndex = try service.attachment.layout.register(.consumers, portID: portID, nodeHash: service.attachment.node.hash) { _ in }
    }

    deinit { service.attachment.layout.unregister(.consumers, index: slotIndex, portID: portID) }

    /// The ids that fired since the last look, without waiting.
    public func tryWait() -> [EventID] { fired() }

    /// Waits at most `timeout` for any id to fire; returns the ids (empty on timeout).
    public func wait(timeout: Duration? = nil) -> [EventID] {
        let end = deadline(after: timeout)
        while true {
            let sequence = event.sequence
            let ids = fired()
            if !ids.isEmpty { return ids }
            let remaining: Duration? = end.map { .nanoseconds(Int64(max(0, Int64(bitPattern: $0 &- monotonicNanoseconds())))) }
            if let remaining, remaining <= .zero { return [] }
            var w = waiter // a local copy, stored back: no access to the listener held across the wait
            let changed = event.wait(after: sequence, timeout: remaining, waiter: &w)
            waiter = w
            if changed == nil { return fired() }
        }
    }

    func fired() -> [EventID] {
        var ids: [EventID] = []
        let counters = service.counters
        for id in seen.indices {
            let now = counters.value(id)
            if now != seen[id] {
                seen[id] = now
                ids.append(EventID(id))
            }
        }
        return ids
    }

    /// Ready when an id fires that this listener has not seen as of this
    /// call (taken on the listener's thread); reads only shared memory.
    func readOnlyWatch() -> Readiness.Watch {
        let service = self.service, baseline = seen
        return Readiness.Watch(parker: event.parker, keepAlive: service) {
            service.counters.changedBeforeSleeping(since: baseline)
        }
    }

    /// True if an id fired since the last look (for wait sets).
    func hasFired() -> Bool {
        service.counters.changedBeforeSleeping(since: seen)
    }
}
