import Shm
import ShmSystem
import Synchronization

/// What the bridge's threads share: the stop word, the statistics, the
/// publishers the importer created (whose samples the exporter must not
/// send back), and the log.
final class BridgeShared: @unchecked Sendable {
    /// Set once to stop; the idle threads sleep on it.
    let stopSignal = StopSignal()
    private let state = Mutex(State())
    let logger: @Sendable (String) -> Void
    /// The services this bridge holds the machine-wide claim of (`ServiceClaims`).
    let claims = ServiceClaims()

    struct State {
        var statistics: [String: ServiceStatistics] = [:]
        var ownPublishers: Set<UInt64> = []
        var lastLog: [String: UInt64] = [:]
    }

    init(logger: @escaping @Sendable (String) -> Void) {
        self.logger = logger
    }

    var isStopping: Bool { stopSignal.isStopping }

    func stop() { stopSignal.stop() }

    /// Sleeps up to `duration`, or until `stop()`.
    func sleep(_ duration: Duration) {
        stopSignal.sleep(until: monotonicNanoseconds() &+ UInt64(duration.milliseconds) * 1_000_000)
    }

    func statistics(for service: String) -> ServiceStatistics {
        state.withLock { state in
            if let existing = state.statistics[service] { return existing }
            let created = ServiceStatistics(service: service)
            state.statistics[service] = created
            return created
        }
    }

    var allStatistics: [ServiceStatistics] {
        state.withLock { $0.statistics.values.sorted { $0.service < $1.service } }
    }

    func addOwnPublisher(_ id: UInt64) { state.withLock { _ = $0.ownPublishers.insert(id) } }
    func isOwnPublisher(_ id: UInt64) -> Bool { state.withLock { $0.ownPublishers.contains(id) } }

    func log(_ message: String) { logger(message) }

    /// Takes `service`'s machine-wide claim; false (and a throttled log line)
    /// if another bridge on this machine bridges it.
    func claim(_ service: String) -> Bool {
        if claims.claim(service) { return true }
        logThrottled("'\(service)' is bridged by another bridge on this machine: this one stands by and takes it over "
                     + "if that one stops (one bridge per machine per service)")
        return false
    }

    /// Logs `message` at most once a second per distinct text.
    func logThrottled(_ message: String) {
        let now = monotonicNanoseconds()
        let due = state.withLock { state -> Bool in
            if let last = state.lastLog[message], now &- last < 1_000_000_000 { return false }
            state.lastLog[message] = now
            if state.lastLog.count > 1000 { state.lastLog.removeAll() }
            return true
        }
        if due { logger(message) }
    }
}
