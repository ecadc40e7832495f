import CoreMetrics
import Shm
import ShmLog
import ShmSystem
import Synchronization

/// Reports the counters swift-shm keeps in shared memory through
/// swift-metrics, so any backend (swift-prometheus, swift-otel, statsd)
/// exports them: the numbers of every process using a service on this
/// machine, read the way Aeron's tools read its counters file — nothing is
/// added to the publish or append paths.
///
/// Each `sample()` reads, for every service of the calling user (or those
/// `services` selects) and for each log directory in `logs`:
///
/// | label | type | dimensions | value |
/// | --- | --- | --- | --- |
/// | `shm_service_ports` | gauge | service, kind | live ports (publisher, subscriber, client, server, notifier, listener, handle) |
/// | `shm_service_memory_bytes` | gauge | service | bytes in /dev/shm: service segment, pools, inboxes |
/// | `shm_publisher_samples_sent_total` | counter | service | samples sent by its publishers |
/// | `shm_subscriber_samples_delivered_total` | counter | service | samples delivered into its subscribers' inboxes |
/// | `shm_subscriber_samples_lost_total` | counter | service | samples its subscribers lost to the overflow policy |
/// | `shm_subscriber_backlog_samples` | gauge | service | samples waiting in its subscribers' inboxes |
/// | `shm_log_appends_total` | counter | log | records appended (sequence numbers handed out) |
/// | `shm_log_bytes` | gauge | log | bytes of segment files on disk |
/// | `shm_log_segments` | gauge | log | segment files |
///
/// Counters report what grew since the previous sample (per port, so a
/// port that goes away or restarts never makes a counter run backwards).
/// Events the library counts as they happen (`shm_ports_reclaimed_total`,
/// `shm_log_corrupt_records_total`, …) go through the same swift-metrics
/// system without a sampler; DESIGN.md lists them all.
public final class MetricsSampler: Sendable {
    private let logDirectories: [String]
    private let includes: @Sendable (String) -> Bool
    private let factory: (any MetricsFactory)?
    private let state = Mutex(State())

    private struct State {
        var last: [String: UInt64] = [:]
        var logs: [String: Log] = [:]
    }

    /// - Parameters:
    ///   - logs: log directories to report (opened read-only on first use).
    ///   - services: which services to report (default: all of the calling user's).
    ///   - factory: the metrics factory (default: `MetricsSystem.factory`, as bootstrapped).
    public init(logs: [String] = [], services: @escaping @Sendable (String) -> Bool = { _ in true },
                factory: (any MetricsFactory)? = nil) {
        logDirectories = logs
        includes = services
        self.factory = factory
    }

    /// Reads everything once and updates the metrics.
    public func sample() {
        for service in ServiceDirectory.serviceNames() where includes(service) {
            guard let info = try? ServiceDirectory.inspect(service) else { continue }
            report(info)
        }
        for directory in logDirectories { report(log: directory) }
    }

    /// Samples every `interval` until the task is cancelled.
    public func run(every interval: Duration = .seconds(10)) async {
        while !Task.isCancelled {
            sample()
            try? await Task.sleep(for: interval)
        }
    }

    private func report(_ info: ServiceDirectory.ServiceInfo) {
        let service = [("service", info.name)]
        var byKind: [String: Int] = [:]
        for port in info.ports where port.alive { byKind[port.kind, default: 0] += 1 }
        for kind in Set(info.ports.map(\.kind)).union(byKind.keys) {
            gauge("shm_service_ports", service + [("kind", kind)]).record(byKind[kind] ?? 0)
        }
        gauge("shm_service_memory_bytes", service).record(info.memoryBytes)
        var backlog = 0, held: UInt64 = 0
        for port in info.ports {
            let key = "\(info.name)/\(port.kind)/\(port.portID)"
            if let sent = port.sent { advance("shm_publisher_samples_sent_total", service, key: key, to: sent) }
            if let delivered = port.delivered { advance("shm_subscriber_samples_delivered_total", service, key: key, to: delivered) }
            if let lost = port.lost { advance("shm_subscriber_samples_lost_total", service, key: key, to: lost) }
            backlog += port.backlog ?? 0
            held &+= port.held ?? 0
        }
        if info.pattern == .publishSubscribe {
            gauge("shm_subscriber_backlog_samples", service).record(backlog)
            gauge("shm_service_pool_samples_in_use", service).record(Int(clamping: held))
        }
    }

    private func report(log directory: String) {
        let log: Log? = state.withLock { state in
            if let open = state.logs[directory] { return open }
            let opened = try? Log.open(directory: directory)
            state.logs[directory] = opened
            return opened
        }
        guard let log else { return }
        let dimensions = [("log", directory)]
        advance("shm_log_appends_total", dimensions, key: directory, to: log.nextPosition.sequence &- 1)
        let (segments, bytes) = log.footprint()
        gauge("shm_log_bytes", dimensions).record(bytes)
        gauge("shm_log_segments", dimensions).record(segments)
    }

    /// Adds to counter `label` what the monotonic `value` of `key` grew by
    /// since the last sample (all of it the first time; a smaller value
    /// means a new port or log under the same key: all of it again).
    private func advance(_ label: String, _ dimensions: [(String, String)], key: String, to value: UInt64) {
        let delta: UInt64 = state.withLock { state in
            let slot = label + "|" + key
            let previous = state.last[slot]
            state.last[slot] = value
            guard let previous else { return value }
            return value >= previous ? value - previous : value
        }
        guard delta > 0 else { return }
        let counter = factory.map { Counter(label: label, dimensions: dimensions, factory: $0) } ?? Counter(label: label, dimensions: dimensions)
        counter.increment(by: Int64(clamping: delta))
    }

    private func gauge(_ label: String, _ dimensions: [(String, String)]) -> Gauge {
        factory.map { Gauge(label: label, dimensions: dimensions, factory: $0) } ?? Gauge(label: label, dimensions: dimensions)
    }
}
