import CoreMetrics
import Logging
import MetricsTestKit
import Shm
import Synchronization

/// What the library reported through swift-log and swift-metrics while the
/// tests ran: one capturing logger (`ShmLogging.logger`) and one
/// `TestMetrics` factory (`MetricsSystem`, which can be bootstrapped once
/// per process), installed on first use. Tests run in parallel in one
/// process: filter by your own unique names.
public enum CapturedDiagnostics {
    public struct Line: Sendable {
        public let level: Logger.Level
        public let message: String
        public let metadata: [String: String]
    }

    private static let lines = Mutex<[Line]>([])

    /// The metrics every `Counter`/`Gauge` made without a factory reports to.
    public static let metrics: TestMetrics = {
        let metrics = TestMetrics()
        MetricsSystem.bootstrap(metrics)
        return metrics
    }()

    private static let installed: Bool = {
        var logger = Logger(label: "swift-shm-tests", factory: { _ in CapturingHandler() })
        logger.logLevel = .trace
        ShmLogging.logger = logger
        _ = metrics
        return true
    }()

    /// Installs the capturing logger and metrics (idempotent).
    public static func install() { _ = installed }

    /// Lines logged so far whose metadata has `key` = `value`.
    public static func lines(where key: String, is value: String) -> [Line] {
        lines.withLock { $0.filter { $0.metadata[key] == value } }
    }

    fileprivate static func record(_ line: Line) { lines.withLock { $0.append(line) } }

    private struct CapturingHandler: LogHandler {
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            var flat: [String: String] = [:]
            for (key, value) in metadata.merging(event.metadata ?? [:], uniquingKeysWith: { $1 }) { flat[key] = "\(value)" }
            CapturedDiagnostics.record(Line(level: event.level, message: "\(event.message)", metadata: flat))
        }
    }
}
