import Synchronization
import ShmSystem
import ShmPrimitives

/// Configuration of an event service.
public struct EventConfig: Hashable, Sendable {
    public var maxNotifiers: Int
    public var maxListeners: Int
    /// Event ids run from 0 to `maxEventID`.
    public var maxEventID: Int

    public init(maxNotifiers: Int = 16, maxListeners: Int = 16, maxEventID: Int = 63) {
        self.maxNotifiers = maxNotifiers
        self.maxListeners = maxListeners
        self.maxEventID = maxEventID
    }
}

/// An event id (0…`maxEventID`).
public struct EventID: Hashable, Sendable, Comparable, CustomStringConvertible, ExpressibleByIntegerLiteral {
    public let value: Int
    public init(_ value: Int) { self.value = value }
    public init(integerLiteral value: Int) { self.value = value }
    public static func < (a: EventID, b: EventID) -> Bool { a.value < b.value }
    public var description: String { "\(value)" }
}

extension Node {
    /// Opens or creates an event service: notifiers signal event ids,
    /// listeners wait for them.
    public func event(_ service: String, config: EventConfig = .init(), mode: OpenMode = .openOrCreate) throws(ServiceError) -> EventService {
        try EventService(node: self, name: ServiceName(service), config: config, mode: mode)
    }
}

/// An event service.
///
/// The service segment's pattern area holds one 64-bit counter per event id
/// and a futex event: a notifier bumps the counter of the id, then signals;
/// a listener compares the counters with the values it saw last. Any number
/// of listeners see every id that fired (ids that fired several times
/// between two looks are reported once), and no listener needs a queue that
/// could overflow.
///
/// **Late listeners.** An event is a *change* seen after a listener exists:
/// a listener starts from the counters as they are when it is created, so
/// ids notified before that are not reported to it (events are not
/// messages and keep no history). Where a late joiner must learn what
/// happened before it came, publish a sample with `historySize` ≥ 1 or
/// append to a log, and use the event only as the wake-up.
public final class EventService: @unchecked Sendable {
    let attachment: ServiceAttachment
    public let config: EventConfig
    public var name: String { attachment.name.value }

    init(node: Node, name: ServiceName, config: EventConfig, mode: OpenMode) throws(ServiceError) {
        guard (1...4096).contains(config.maxNotifiers), (1...4096).contains(config.maxListeners),
              (0...65535).contains(config.maxEventID) else {
            throw .invalidConfiguration("notifiers and listeners 1…4096, maxEventID 0…65535")
        }
        let layoutConfig = ServiceLayout.Config(
            pattern: .event, payload: PayloadType(name: "event", size: 0, alignment: 1), maxA: config.maxNotifiers,
            maxB: config.maxListeners, bufferSize: 0, history: 0, maxLoans: 0, maxBorrowed: 0, overflow: 0,
            requestSize: 0, responseSize: 0, maxEventID: config.maxEventID + 1)
        attachment = try ServiceAttachment(node: node, name: name, config: layoutConfig, mode: mode)
        self.config = config
        // Laid out by the creator before the service became visible.
        do {
            event = try FutexEvent(attaching: attachment.layout.patternArea.view(0..<FutexEvent.size), anchor: attachment)
        } catch {
            throw .corrupt(service: name.value, reason: "event area: \(error)")
        }
    }

    public func notifier() throws(ServiceError) -> Notifier { try Notifier(service: self) }
    public func listener(waitStrategy: WaitStrategy = .block) throws(ServiceError) -> Listener {
        try Listener(service: self, waitStrategy: waitStrategy)
    }

    let event: FutexEvent

    func counter(_ id: Int) -> UnsafeMutablePointer<Atomic<UInt64>> {
        UnsafeMutablePointer(OpaquePointer(attachment.layout.patternArea.unsafeBaseAddress + FutexEvent.size + 8 * id))
    }
}

/// Signals event ids on an event service.
public final class Notifier: @unchecked Sendable {
    public let service: EventService
    public let portID: UInt64
    let slotIndex: Int
    let event: FutexEvent

    init(service: EventService) throws(ServiceError) {
        self.service = service
        portID = UInt64.random(in: 1...UInt64.max)
        event = service.event
        slotIndex = try service.attachment.layout.register(.a, portID: portID, nodeHash: service.attachment.node.hash) { _ in }
    }

    deinit { service.attachment.layout.unregister(.a, index: slotIndex, portID: portID) }

    /// Signals `id`, waking every waiting listener (no syscall if none sleeps).
    public func notify(_ id: EventID = 0) throws(ServiceError) {
        guard (0...service.config.maxEventID).contains(id.value) else {
            throw .invalidConfiguration("event id \(id) outside 0…\(service.config.maxEventID)")
        }
        // SYNC POINT: release pairs with the acquire loads in `Listener.fired`.
        service.counter(id.value).pointee.wrappingAdd(1, ordering: .releasing)
        event.signal(all: true)
    }
}

/// Waits for event ids on an event service.
public final class Listener: @unchecked Sendable {
    public let service: EventService
    public let portID: UInt64
    let slotIndex: Int
    let event: FutexEvent
    let strategy: WaitStrategy
    var seen: [UInt64]

    init(service: EventService, waitStrategy: WaitStrategy) throws(ServiceError) {
        self.service = service
        portID = UInt64.random(in: 1...UInt64.max)
        event = service.event
        strategy = waitStrategy
        seen = (0...service.config.maxEventID).map { service.counter($0).pointee.load(ordering: .acquiring) }
        slotIndex = try service.attachment.layout.register(.b, portID: portID, nodeHash: service.attachment.node.hash) { _ in }
    }

    deinit { service.attachment.layout.unregister(.b, index: slotIndex, portID: portID) }

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
            if event.wait(after: sequence, timeout: remaining, strategy: strategy) == nil { return fired() }
        }
    }

    func fired() -> [EventID] {
        var ids: [EventID] = []
        for id in seen.indices {
            // SYNC POINT: acquire pairs with the release increment in `Notifier.notify`.
            let now = service.counter(id).pointee.load(ordering: .acquiring)
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
            baseline.indices.contains { service.counter($0).pointee.load(ordering: .sequentiallyConsistent) != baseline[$0] }
        }
    }

    /// True if an id fired since the last look (for wait sets).
    func hasFired() -> Bool {
        seen.indices.contains { service.counter($0).pointee.load(ordering: .sequentiallyConsistent) != seen[$0] }
    }
}

extension Node {
    /// Opens an existing event service whatever its configuration (for the
    /// NATS bridge and tools).
    package func openAnyEvent(_ service: String) throws(ServiceError) -> EventService {
        let (name, existing) = try ServiceLayout.existingConfig(of: service, pattern: .event, requested: "events")
        return try EventService(node: self, name: name,
                                // The layout stores the number of ids (maxEventID + 1).
                                config: EventConfig(maxNotifiers: existing.maxA, maxListeners: existing.maxB,
                                                    maxEventID: existing.maxEventID - 1),
                                mode: .open)
    }
}
