import ArgumentParser
import Prometheus
import Shm
import ShmMetrics

/// `shm metrics`: every service's (and the named logs') counters in the
/// Prometheus text format, through swift-metrics and swift-prometheus — what
/// a program gets by bootstrapping its metrics backend and running a
/// `MetricsSampler` (Examples/Metrics shows that).
struct MetricsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "metrics",
        abstract: "Print services' and logs' counters in the Prometheus text format.",
        discussion: """
            Reads the counters kept in shared memory by every process using a service (sent, delivered, \
            lost, backlog, ports, memory) and by logs (appends, bytes, segments). Counters start from \
            what was already counted. With --every, prints again at that interval until interrupted.
            """)

    @Option(name: .customLong("log"), help: ArgumentHelp("A log directory to report (repeatable).", valueName: "dir"))
    var logs: [String] = []
    @Option(help: ArgumentHelp("Only this service (repeatable; default: all).", valueName: "name"))
    var service: [String] = []
    @Option(help: ArgumentHelp("Print again every this many seconds.", valueName: "seconds"))
    var every: Double?
    @OptionGroup var logging: LoggingOptions

    func run() throws {
        logging.apply()
        let registry = PrometheusCollectorRegistry()
        let selected = Set(service)
        let sampler = MetricsSampler(logs: logs, services: { selected.isEmpty || selected.contains($0) },
                                     factory: PrometheusMetricsFactory(registry: registry))
        if every != nil { Interruptible.begin() }
        repeat {
            sampler.sample()
            StandardStreams.write(registry.emitToString(), to: 1)
            guard let every else { break }
            let pause = Duration.milliseconds(Int64(max(0.01, every) * 1000))
            _ = try Interruptible.wait(timeout: pause) { slice -> Bool? in
                sleepNanoseconds(slice.nanoseconds)
                return nil
            }
        } while true
    }
}
