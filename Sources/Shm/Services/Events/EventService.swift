import ShmSystem
@_spi(ShmInternals) import ShmPrimitives

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
            pattern: .event, payload: PayloadType(name: "event", size: 0, alignment: 1), maxProducers: config.maxNotifiers,
            maxConsumers: config.maxListeners, bufferSize: 0, history: 0, maxLoans: 0, maxBorrowed: 0, overflow: 0,
            requestSize: 0, responseSize: 0, maxEventID: config.maxEventID + 1)
        attachment = try ServiceAttachment(node: node, name: name, config: layoutConfig, mode: mode)
        self.config = config
        // Laid out by the creator before the service became visible.
        do {
            event = try SharedEvent(attaching: attachment.layout.patternArea.view(0..<SharedEvent.size), anchor: attachment)
        } catch {
            throw .corrupt(service: name.value, reason: "event area: \(error)")
        }
    }

    public func notifier() throws(ServiceError) -> Notifier { try Notifier(service: self) }
    public func listener(waitStrategy: WaitStrategy = .default) throws(ServiceError) -> Listener {
        try Listener(service: self, waitStrategy: waitStrategy)
    }

    let event: SharedEvent

    /// One counter per id, after the futex event in the service's pattern area.
    var counters: EventCounters {
        EventCounters(base: attachment.layout.patternArea.unsafeBaseAddress + SharedEvent.size, count: config.maxEventID + 1)
    }
}

extension Node {
    /// Opens an existing event service whatever its configuration (for the
    /// NATS bridge and tools).
    package func openAnyEvent(_ service: String) throws(ServiceError) -> EventService {
        let (name, existing) = try ServiceLayout.existingConfig(of: service, pattern: .event, requested: "events")
        return try EventService(node: self, name: name,
                                // The layout stores the number of ids (maxEventID + 1).
                                config: EventConfig(maxNotifiers: existing.maxProducers, maxListeners: existing.maxConsumers,
                                                    maxEventID: existing.maxEventID - 1),
                                mode: .open)
    }
}
