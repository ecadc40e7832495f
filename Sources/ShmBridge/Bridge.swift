import Shm
import ShmSystem

/// Forwards chosen services between this machine's shared memory and NATS
/// (see `BridgeConfiguration` for what, `WireFormat` for how it looks on
/// the wire). The library form of `shm bridge`.
///
/// ```swift
/// let bridge = try Bridge(BridgeConfiguration(url: "nats://10.0.0.2:4222", exports: ["camera.*"]))
/// try bridge.run()          // until bridge.stop() from another thread (or a signal handler's flag)
/// ```
///
/// Threads: the one calling `run()` waits on the exported services'
/// subscribers (one wait set) and looks for new matching services every
/// second; one reads the NATS subscription of imported samples; one serves
/// imported request/response services; one waits on exported events'
/// listeners; nats.c's own threads deliver responses, remote requests and
/// remote events (see `RequestBridge`, `EventBridge`). Loops: samples
/// the import side published here are never exported again, and the NATS
/// connection does not echo this bridge's own messages. Run one bridge per
/// machine for a given service (two bridges exporting and importing the
/// same service on one machine would pass samples back and forth).
public final class Bridge: @unchecked Sendable {
    public let configuration: BridgeConfiguration
    /// This bridge's origin id on the wire (`Shm-Origin`).
    public let origin: UInt64
    public let connection: NatsConnection
    let node: Node
    let shared: BridgeShared
    let importer: SampleImporter?
    let exporter: SampleExporter?
    let requests: RequestBridge
    let events: EventBridge
    let jetStream: JetStream?
    let statisticsSegment: StatisticsPublisher

    /// Connects to NATS (in the background if no server answers yet),
    /// registers a node and subscribes to the imported subjects (confirmed
    /// by the server when connected: messages published after `init`
    /// returns reach this bridge).
    ///
    /// - Parameters:
    ///   - configuration: the server, the services to export and import,
    ///     the logs to mirror or replicate.
    ///   - logger: receives one line per notable event (a service that
    ///     cannot be opened, NATS errors, at most once a second each).
    public init(_ configuration: BridgeConfiguration, logger: @escaping @Sendable (String) -> Void = { _ in }) throws(BridgeError) {
        ServiceClaims.removeStale() // claims of bridges that died
        try configuration.validate()
        self.configuration = configuration
        origin = UInt64.random(in: 1...UInt64.max)
        shared = BridgeShared(logger: logger)
        do { node = try Node(name: configuration.name) } catch { throw .service(error) }
        connection = try NatsConnection(url: configuration.url, name: configuration.name,
                                        sendImmediately: configuration.sendImmediately)
        importer = configuration.imports.isEmpty ? nil
            : try SampleImporter(node: node, connection: connection, configuration: configuration, origin: origin, shared: shared)
        exporter = configuration.exports.isEmpty ? nil
            : SampleExporter(node: node, connection: connection, configuration: configuration, origin: origin, shared: shared)
        requests = try RequestBridge(node: node, connection: connection, configuration: configuration, origin: origin, shared: shared)
        events = try EventBridge(node: node, connection: connection, configuration: configuration, origin: origin, shared: shared)
        jetStream = configuration.logs.isEmpty ? nil : try JetStream(connection)
        statisticsSegment = try StatisticsPublisher(bridge: configuration.name, origin: origin)
        if connection.isConnected {
            try connection.flush(timeout: .seconds(5))
        } else {
            logger("no NATS server at \(configuration.url) yet: retrying with back-off")
        }
    }

    /// Forwards until `stop()`; returns after both threads ended. Call once.
    public func run() throws(BridgeError) {
        let importer = self.importer, exporter = self.exporter
        // Threads besides this one: samples from NATS, and local requests to NATS.
        let running = RunningThreads(), shared = self.shared
        func start(_ loop: @escaping @Sendable () -> Void) {
            running.starting()
            BlockingPool.shared.submit {
                while !shared.isStopping { loop() }
                running.finished()
            }
        }
        if let importer {
            let box = UncheckedBox(importer)
            start { box.value.poll(timeout: .milliseconds(100)) }
        }
        if !configuration.imports.isEmpty {
            let box = UncheckedBox(requests)
            start { box.value.poll(timeout: .milliseconds(100)) }
        }
        if !configuration.exports.isEmpty {
            let box = UncheckedBox(events)
            start { box.value.poll(timeout: .milliseconds(100)) }
        }
        if let jetStream {
            for replication in configuration.logs {
                switch replication.role {
                case .mirror:
                    let box = UncheckedBox(LogMirror(replication, prefix: configuration.prefix, jetStream: jetStream, shared: shared))
                    start { box.value.step(timeout: .milliseconds(100)) }
                case .replica:
                    let box = UncheckedBox(LogReplica(replication, prefix: configuration.prefix, bridgeName: configuration.name,
                                                      jetStream: jetStream, shared: shared))
                    start { box.value.step(timeout: .milliseconds(100)) }
                }
            }
        }
        var lastDiscovery: UInt64 = 0, lastStatistics: UInt64 = 0
        while !shared.isStopping {
            let now = monotonicNanoseconds()
            if now &- lastStatistics >= 1_000_000_000 {
                statisticsSegment.publish(shared.allStatistics)
                lastStatistics = now
            }
            if let exporter {
                let now = monotonicNanoseconds()
                if now &- lastDiscovery >= 1_000_000_000 {
                    exporter.discover()
                    lastDiscovery = now
                }
                exporter.poll(timeout: .milliseconds(100))
            } else {
                shared.sleep(.milliseconds(100))
            }
        }
        running.waitUntilNoneRuns()
        try? connection.flush(timeout: .seconds(2))
        statisticsSegment.publish(shared.allStatistics)
    }

    /// Ends `run()` (within ~100 ms). Safe from any thread.
    public func stop() { shared.stop() }

    /// Per-service counters, sorted by service name.
    public var statistics: [ServiceStatistics] { shared.allStatistics }
}

/// Carries a non-Sendable value into the import thread, which alone uses it.
struct UncheckedBox<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
