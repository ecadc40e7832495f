#if canImport(ShmBridge)
import ArgumentParser
import Foundation
import Shm
import ShmBridge

/// How a bridge's export thread waits (`BridgeConfiguration.exportWait`).
enum BridgeWait: String, CaseIterable, ExpressibleByArgument, Decodable, Sendable {
    case park, yield, spin

    var strategy: WaitStrategy {
        switch self {
        case .park: .default
        case .yield: .yielding
        case .spin: .busySpin
        }
    }
}

/// `shm bridge` — forward services between this machine and NATS.
struct BridgeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bridge",
        abstract: "Forward publish/subscribe services between this machine's shared memory and NATS.",
        discussion: """
            Exported services go from here to NATS, imported ones from NATS to here (created here with the
            exporter's type and configuration if they do not exist). Patterns: '*' matches any characters.
            Subjects: <prefix>.ps.<service>; headers name the service, payload type, publisher, sequence
            and origin (see ShmBridge's WireFormat). Samples larger than the server's max_payload travel in
            parts. Runs until SIGINT/SIGTERM; prints per-service counters at exit (and every
            --stats-interval seconds), one JSON object per line with --json.

            A configuration file (JSON) may give the same settings:
              {"url": "nats://10.0.0.2:4222", "prefix": "swiftshm", "name": "edge-1",
               "export": ["camera.*"], "import": ["model.results"], "importPrefix": "",
               "sendImmediately": false, "batching": true, "exportWait": "park",
               "logs": [{"role": "mirror", "stream": "orders", "directory": "/var/lib/orders"}]}
            Logs: --mirror-log STREAM=DIR publishes every record of the log in DIR to JetStream stream STREAM
            (resuming after the stream's last record); --replica-log STREAM=DIR builds the log in DIR from it
            with the same sequence numbers, timestamps and bytes (a durable consumer: resumes after restarts).
            Flags add to (export/import) or replace (url, prefix, name) what it says.
            """
    )

    @Option(help: "NATS server URL(s), comma-separated.") var url: String?
    @Option(name: .customLong("export"), help: "Services to send to NATS (pattern; repeatable).") var exports: [String] = []
    @Option(name: .customLong("import"), help: "Services to take from NATS (pattern; repeatable).") var imports: [String] = []
    @Option(help: "Subject prefix.") var prefix: String?
    @Option(help: "Node and NATS connection name.") var name: String?
    @Option(name: .customLong("mirror-log"), help: "Mirror a log into a JetStream stream: STREAM=DIRECTORY (repeatable).")
    var mirrorLogs: [String] = []
    @Option(name: .customLong("replica-log"), help: "Build a log from a JetStream stream: STREAM=DIRECTORY (repeatable).")
    var replicaLogs: [String] = []
    @Option(name: .customLong("import-prefix"), help: "Name imported services <prefix><name> here (e.g. site-b.).")
    var importPrefix: String?
    @Option(name: .customLong("config"), help: "A JSON configuration file.") var configFile: String?
    @Option(name: .customLong("stats-interval"), help: "Print counters every N seconds (0: only at exit).")
    var statsInterval: Double = 0
    @Flag(name: .customLong("send-immediately"), help: "Write each message to the socket at once (lower latency, more syscalls).")
    var sendImmediately = false
    @Flag(inversion: .prefixedNo,
          help: "Samples waiting together leave as one NATS message (per-sample metadata in the payload; a lone sample goes as itself). On by default.")
    var batch: Bool?
    @Option(name: .customLong("export-wait"),
            help: "How the export thread waits for samples: park (spin briefly, then sleep; default), yield (poll, giving way to other threads: no wake-up latency), spin (hold a core).")
    var exportWait: BridgeWait?
    @Flag(help: "Print the counters of every bridge running on this machine and exit.") var stats = false
    @Flag(help: "Counters as JSON lines.") var json = false

    struct FileConfiguration: Decodable {
        var url: String?
        var prefix: String?
        var name: String?
        var export: [String]?
        var `import`: [String]?
        var importPrefix: String?
        var sendImmediately: Bool?
        var batching: Bool?
        var exportWait: BridgeWait?
        var logs: [FileLog]?
    }

    struct FileLog: Decodable {
        var role: String
        var stream: String
        var directory: String
        var durable: String?
    }

    static func parseLog(_ text: String, role: LogReplication.Role) throws -> LogReplication {
        guard let equals = text.firstIndex(of: "=") else {
            throw ValidationError("--\(role.rawValue)-log takes STREAM=DIRECTORY, not '\(text)'")
        }
        return LogReplication(role: role, stream: String(text[..<equals]), directory: String(text[text.index(after: equals)...]))
    }

    func resolved() throws -> BridgeConfiguration {
        var configuration = BridgeConfiguration()
        if let configFile {
            let data: Data
            do { data = try Data(contentsOf: URL(fileURLWithPath: configFile)) } catch {
                throw CommandFailure("cannot read \(configFile): \(error.localizedDescription)")
            }
            let file: FileConfiguration
            do { file = try JSONDecoder().decode(FileConfiguration.self, from: data) } catch {
                throw CommandFailure("\(configFile) is not a bridge configuration: \(error)")
            }
            configuration.url = file.url ?? configuration.url
            configuration.prefix = file.prefix ?? configuration.prefix
            configuration.name = file.name ?? configuration.name
            configuration.exports = file.export ?? []
            configuration.imports = file.import ?? []
            configuration.importPrefix = file.importPrefix ?? ""
            configuration.sendImmediately = file.sendImmediately ?? false
            configuration.batching = file.batching ?? configuration.batching
            configuration.exportWait = file.exportWait?.strategy ?? configuration.exportWait
            for log in file.logs ?? [] {
                guard let role = LogReplication.Role(rawValue: log.role) else {
                    throw CommandFailure("\(configFile): log role '\(log.role)' (mirror or replica)")
                }
                configuration.logs.append(LogReplication(role: role, stream: log.stream, directory: log.directory, durable: log.durable))
            }
        }
        configuration.url = url ?? configuration.url
        configuration.prefix = prefix ?? configuration.prefix
        configuration.name = name ?? configuration.name
        configuration.exports += exports
        configuration.imports += imports
        configuration.importPrefix = importPrefix ?? configuration.importPrefix
        configuration.sendImmediately = sendImmediately || configuration.sendImmediately
        configuration.batching = batch ?? configuration.batching
        configuration.exportWait = exportWait?.strategy ?? configuration.exportWait
        configuration.logs += try mirrorLogs.map { try Self.parseLog($0, role: .mirror) }
        configuration.logs += try replicaLogs.map { try Self.parseLog($0, role: .replica) }
        return configuration
    }

    @OptionGroup var logging: LoggingOptions

    func run() throws {
        logging.apply()
        if stats { return Self.printRunningBridges(json: json, service: nil) }
        let configuration = try resolved()
        Interruptible.begin()
        let bridge = try reporting { try Bridge(configuration) { StandardStreams.printError("bridge: \($0)") } }
        StandardStreams.printLine("ready: exporting \(configuration.exports), importing \(configuration.imports), "
                                  + "logs \(configuration.logs.map { "\($0.role.rawValue) \($0.stream)" }) via \(configuration.url); "
                                  + "batching \(configuration.batching ? "on" : "off"), "
                                  + "export wait \(BridgeWait.allCases.first { $0.strategy == configuration.exportWait }?.rawValue ?? "custom"), "
                                  + "send \(configuration.sendImmediately ? "immediately" : "buffered")")
        let failure = UncheckedResult()
        let finished = UncheckedFlag()
        BlockingPool.shared.submit {
            do { try bridge.run() } catch { failure.set("\(error)") }
            finished.set()
        }
        let json = self.json
        var lastStats = monotonicNanoseconds()
        var caught: Error?
        while !finished.isSet {
            do { try Interruptible.check() } catch {
                caught = error
                bridge.stop()
                break
            }
            usleep(50_000)
            if statsInterval > 0, monotonicNanoseconds() &- lastStats >= UInt64(statsInterval * 1e9) {
                lastStats = monotonicNanoseconds()
                Self.printStatistics(bridge, json: json)
            }
        }
        while !finished.isSet { usleep(10_000) }
        Self.printStatistics(bridge, json: json)
        if let message = failure.value { throw CommandFailure(message) }
        if let caught { throw caught }
    }

    /// The counters other bridges publish (`StatisticsSegment`), for one service or all.
    static func printRunningBridges(json: Bool, service: String?) {
        for report in StatisticsSegment.reports() {
            let liveness = report.creator.map { "pid \($0.pid), \($0.liveness.display)" } ?? "creator unknown"
            for entry in report.services where service == nil || entry.name == service {
                if json {
                    struct Row: Encodable { let bridge: String; let service: String; let counts: [String: UInt64] }
                    var counts: [String: UInt64] = [:]
                    for (key, value) in entry.counters { counts[key] = value }
                    try? printJSONLine(Row(bridge: report.segment, service: entry.name, counts: counts))
                } else {
                    StandardStreams.printLine("\(entry.name) via \(report.segment) (\(liveness)): "
                                              + entry.counters.map { "\($0.0)=\($0.1)" }.joined(separator: " "))
                }
            }
        }
    }

    static func printStatistics(_ bridge: Bridge, json: Bool) {
        for service in bridge.statistics {
            let counts = service.counts
            if json {
                var object: [String: UInt64] = [:]
                for (key, value) in counts { object[key] = value }
                struct Row: Encodable { let service: String; let counts: [String: UInt64] }
                try? printJSONLine(Row(service: service.service, counts: object))
            } else {
                StandardStreams.printLine("\(service.service): " + counts.map { "\($0.0)=\($0.1)" }.joined(separator: " "))
            }
        }
    }
}

/// A value the bridge thread sets and the main thread reads.
final class UncheckedResult: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: String?
    func set(_ value: String) { lock.withLock { stored = value } }
    var value: String? { lock.withLock { stored } }
}

final class UncheckedFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var flag = false
    func set() { lock.withLock { flag = true } }
    var isSet: Bool { lock.withLock { flag } }
}
#else
import ArgumentParser

/// `shm bridge` in a build without libnats.
struct BridgeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bridge", abstract: "Forward services to and from NATS (this build has no NATS client).")
    @OptionGroup var logging: LoggingOptions

    func run() throws {
        logging.apply()
        throw CommandFailure("this shm was built without libnats (install libnats-dev and rebuild) — no bridge")
    }
}
#endif
