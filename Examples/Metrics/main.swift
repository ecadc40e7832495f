// Exporting swift-shm's logs and metrics with the ecosystem's libraries.
//
//   swift run example-metrics
//
// A program bootstraps its logging and metrics backends once (here
// swift-log's stderr handler and swift-prometheus); swift-shm then
//  - logs operator events (reclaimed ports, log recovery, corrupt records,
//    NATS reconnects) through `ShmLogging.logger`, silent until you set it,
//  - counts those events through swift-metrics, and
//  - `MetricsSampler` reports the counters services keep in shared memory
//    (every process's: sent, delivered, lost, backlog, ports, memory).
// A real program serves `registry.emitToString()` on /metrics (with
// Hummingbird or Vapor) or uses swift-otel instead of swift-prometheus.

import Logging
import Metrics
import Prometheus
import Shm
import ShmMetrics

// 1. Backends, once per process.
LoggingSystem.bootstrap { label in StreamLogHandler.standardError(label: label) }
let registry = PrometheusCollectorRegistry()
MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))

// 2. swift-shm's operator events into that logging system (silent by default).
var logger = Logger(label: "swift-shm")
logger.logLevel = .notice
ShmLogging.logger = logger

// 3. Some traffic: a publisher and a subscriber of one service.
struct Reading: BitwiseCopyable { var value: Double }
let name = "example.metrics.\(ProcessIdentity.current.pid)"
let node = try Node(name: "example-metrics")
let service = try node.publishSubscribe(name, of: Reading.self, config: PublishSubscribeConfig(subscriberBufferSize: 8))
let subscriber = try service.subscriber()
let publisher = try service.publisher()
for i in 0..<20 {
    try publisher.loanUninitialized().write(Reading(value: Double(i))).send()
    if i % 2 == 0 { _ = try subscriber.receive(timeout: .seconds(5)) } // read half: the rest waits or is lost
}

// 4. Sample the shared-memory counters (a service would do this every few
//    seconds: `Task { await sampler.run(every: .seconds(10)) }`) and export.
let sampler = MetricsSampler(services: { $0 == name })
sampler.sample()
print(registry.emitToString(), terminator: "")
