import Shm
import ShmSystem
import Synchronization

/// Events across NATS (subjects `<prefix>.ev.<service>`): a listener per
/// exported event service (one wait set, the bridge's event thread) sends
/// each id that fired; notifications from NATS are notified here by a
/// notifier per imported service (created with the sender's largest id if
/// the service does not exist).
///
/// Notifications of one id coalesce until a listener looks — here and
/// across the bridge alike: an id notified three times may arrive once.
///
/// **Both ways.** A listener cannot tell who notified, so a service bridged
/// in both directions would send every imported notification straight
/// back. The bridge remembers each id it notified here from NATS (an
/// *echo*, kept for `echoWindow`) and does not export that id when its own
/// listener next sees it fire (`loops_skipped`). A local notification of
/// the same id in that window coalesces with the imported one, which is
/// what an event is: the other side has that id fired already.
///
/// The expectation is read *before* the listener looks, and consumed only
/// if no newer import of the id came in between: an import notified while
/// the listener was looking may have been seen in that look or may fire
/// at the next, so its expectation stays (at most `echoWindow`). Consuming
/// it on the first sighting let that second firing go back out.
final class EventBridge: @unchecked Sendable {
    /// How long an imported notification is expected back at our listener.
    static let echoWindow: UInt64 = 2_000_000_000
    struct Exported {
        let name: String
        let service: EventService
        let listener: Listener
        let subject: String
        let headers: [(String, String)]
        let statistics: ServiceStatistics
    }

    let node: Node
    let connection: NatsConnection
    let configuration: BridgeConfiguration
    let origin: UInt64
    let shared: BridgeShared
    let waitSet = WaitSet()
    var exported: [String: Exported] = [:]
    var byAttachment: [WaitSet.Attachment: String] = [:]
    var discovery = ServiceDiscovery(.event, action: "export")
    var lastDiscovery: UInt64 = 0
    /// Notifiers of imported services (nats.c's event thread only).
    var notifiers: [String: Notifier] = [:]
    /// Ids notified here from NATS and not yet seen by our own listener:
    /// service → id → until when it is expected (written by nats.c's event
    /// thread, consumed by the bridge's event thread).
    let echoes = Mutex<[String: [Int: Echo]]>([:])

    /// An id notified here from NATS: how many times (a generation), until
    /// when it is expected back at our listener, and whether the notify
    /// has returned (an expectation is stored before notifying — the
    /// listener may see the id fire at once — and confirmed after).
    struct Echo: Equatable {
        var generation: UInt64
        var until: UInt64
        var confirmed: Bool
    }

    /// Expectations kept per service before expired ones are swept.
    static let echoSweep = 1024

    init(node: Node, connection: NatsConnection, configuration: BridgeConfiguration, origin: UInt64,
         shared: BridgeShared) throws(BridgeError) {
        self.node = node
        self.connection = connection
        self.configuration = configuration
        self.origin = origin
        self.shared = shared
        if !configuration.imports.isEmpty {
            try connection.subscribe(WireFormat.allEvents(prefix: configuration.prefix)) { [unowned self] message in
                self.notify(message)
            }
        }
    }

    // MARK: Exported: listeners here → NATS

    func poll(timeout: Duration) {
        let now = monotonicNanoseconds()
        if now &- lastDiscovery >= 1_000_000_000 {
            discover()
            lastDiscovery = now
        }
        guard waitSet.count > 0 else {
            shared.sleep(timeout)
            return
        }
        for attachment in (try? waitSet.wait(timeout: timeout)) ?? [] {
            guard let name = byAttachment[attachment], let entry = exported[name] else { continue }
            let expected = echoes.withLock { $0[name] ?? [:] } // before looking
            for id in entry.listener.tryWait() {
                if isEcho(of: id.value, in: name, expectedBefore: expected[id.value]) {
                    ServiceStatistics.add(entry.statistics.loopsSkipped)
                    continue
                }
                do throws(BridgeError) {
                    try connection.publish(entry.subject, headers: entry.headers + [(WireFormat.Header.event, String(id.value))],
                                           payload: UnsafeRawBufferPointer(start: nil, count: 0))
                    ServiceStatistics.add(entry.statistics.samplesOut)
                } catch {
                    ServiceStatistics.add(entry.statistics.sendFailures)
                    shared.logThrottled("'\(name)' → NATS: \(error)")
                }
            }
        }
    }

    /// Whether `id` fired here because we notified it from NATS. The
    /// expectation is consumed only if the listener's look certainly
    /// covered it: it was confirmed (its notify had returned) before the
    /// look, and no newer import came since (`expectedBefore` was read
    /// before looking). Otherwise it stays, at most `echoWindow`.
    private func isEcho(of id: Int, in name: String, expectedBefore: Echo?) -> Bool {
        let now = monotonicNanoseconds()
        return echoes.withLock { echoes in
            guard let echo = echoes[name]?[id] else { return false }
            if (echo == expectedBefore && echo.confirmed) || now > echo.until { echoes[name]?[id] = nil }
            return now <= echo.until
        }
    }

    private func discover() {
        let configuration = self.configuration, shared = self.shared
        discovery.discover(wants: { BridgeConfiguration.matches($0, configuration.exports) }, handled: { exported[$0] != nil },
                           log: { shared.log($0) }) { (name: String) throws(ServiceError) -> ServiceDiscovery.Outcome in
            guard shared.claim(name) else { return .deferred }
            let service = try node.openAnyEvent(name)
            let listener = try service.listener()
            let entry = Exported(
                name: name, service: service, listener: listener,
                subject: WireFormat.eventSubject(prefix: configuration.prefix, service: name),
                headers: [(WireFormat.Header.service, name), (WireFormat.Header.maxEvent, String(service.config.maxEventID)),
                          (WireFormat.Header.origin, WireFormat.hex(origin))],
                statistics: shared.statistics(for: name))
            exported[name] = entry
            byAttachment[waitSet.attach(listener)] = name
            return .taken
        }
    }

    // MARK: Imported: NATS → notifiers here

    private func notify(_ message: NatsMessage) {
        guard let remote = message.header(WireFormat.Header.service), BridgeConfiguration.matches(remote, configuration.imports),
              message.subjectIs(WireFormat.eventSubject(prefix: configuration.prefix, service: remote)),
              message.header(WireFormat.Header.origin) != WireFormat.hex(origin) else { return }
        let name = configuration.localName(ofImported: remote)
        let stats = shared.statistics(for: name)
        guard let id = message.header(WireFormat.Header.event).flatMap({ Int($0) }), id >= 0,
              let maxID = message.header(WireFormat.Header.maxEvent).flatMap({ Int($0) }), (0...65535).contains(maxID) else {
            ServiceStatistics.add(stats.malformed)
            return
        }
        do throws(ServiceError) {
            let notifier: Notifier
            if let existing = notifiers[name] {
                notifier = existing
            } else {
                // Another bridge on this machine imports it: its notification is the one listeners get.
                guard shared.claim(name) else {
                    ServiceStatistics.add(stats.localDrops)
                    return
                }
                let service = ServiceDirectory.serviceNames().contains(name)
                    ? try node.openAnyEvent(name) : try node.event(name, config: EventConfig(maxEventID: maxID))
                notifier = try service.notifier()
                notifiers[name] = notifier
            }
            // Before notifying: our listener may see it fire at once.
            let expectsEcho = BridgeConfiguration.matches(name, configuration.exports)
            var generation: UInt64 = 0
            if expectsEcho {
                let now = monotonicNanoseconds()
                generation = echoes.withLock { echoes in
                    if (echoes[name]?.count ?? 0) >= EventBridge.echoSweep {
                        echoes[name] = echoes[name]?.filter { $0.value.until >= now }
                    }
                    let generation = (echoes[name]?[id]?.generation ?? 0) &+ 1
                    echoes[name, default: [:]][id] = Echo(generation: generation, until: now &+ EventBridge.echoWindow,
                                                          confirmed: false)
                    return generation
                }
            }
            var failed = true
            defer {
                // Confirmed once notify returned; gone if it failed (nothing will fire).
                if expectsEcho {
                    let notified = !failed
                    echoes.withLock { echoes in
                        guard echoes[name]?[id]?.generation == generation else { return }
                        if notified { echoes[name]?[id]?.confirmed = true } else { echoes[name]?[id] = nil }
                    }
                }
            }
            try notifier.notify(EventID(id))
            failed = false
            ServiceStatistics.add(stats.samplesIn)
        } catch {
            // An id outside the local service's range counts as a type mismatch.
            if case .invalidConfiguration = error { ServiceStatistics.add(stats.typeMismatches) } else { ServiceStatistics.add(stats.localDrops) }
            shared.logThrottled("'\(name)': \(error)")
        }
    }
}
