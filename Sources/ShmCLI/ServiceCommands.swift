import ArgumentParser
import Foundation
import Shm
import ShmReplay
#if canImport(ShmBridge)
import ShmBridge
#endif

/// What `shm ls` and `shm service` report about a port, in JSON.
struct PortReport: Encodable {
    let kind: String
    let portID: String
    let pid: Int32
    let alive: Bool
    let registeredAt: String?
    let backlog: Int?
    let lost: UInt64?
    let delivered: UInt64?
    let held: UInt64?
    let sent: UInt64?
    let memoryBytes: Int?
    let poolSegments: Int?
    let poolChunks: Int?
    let poolChunkCapacity: Int?

    enum CodingKeys: String, CodingKey {
        case kind, pid, alive, backlog, lost, delivered, held, sent
        case portID = "port_id", registeredAt = "registered_at", memoryBytes = "memory_bytes"
        case poolSegments = "pool_segments", poolChunks = "pool_chunks", poolChunkCapacity = "pool_chunk_capacity"
    }

    init(_ port: ServiceDirectory.PortInfo) {
        kind = port.kind
        portID = String(port.portID, radix: 16)
        pid = port.process.pid
        alive = port.alive
        registeredAt = port.registeredAt > 0 ? isoTime(nanoseconds: port.registeredAt) : nil
        backlog = port.backlog
        lost = port.lost
        delivered = port.delivered
        held = port.held
        sent = port.sent
        memoryBytes = port.memoryBytes
        poolSegments = port.poolSegments
        poolChunks = port.poolChunks
        poolChunkCapacity = port.poolChunkCapacity
    }
}

/// A pool as `shm service` shows it: "3 seg, 24 × 1 MiB" (segments,
/// chunks, and the bytes the largest chunks hold).
func poolSummary(_ port: ServiceDirectory.PortInfo) -> String {
    guard let segments = port.poolSegments, let chunks = port.poolChunks, let capacity = port.poolChunkCapacity else { return "-" }
    return "\(segments) seg, \(chunks) × \(ByteCount.format(capacity))"
}

/// A service in JSON.
struct ServiceReport: Encodable {
    let name: String
    let pattern: String
    let payload: String
    let settings: [String: String]
    let ports: [PortReport]
    let memoryBytes: Int

    enum CodingKeys: String, CodingKey { case name, pattern, payload, settings, ports, memoryBytes = "memory_bytes" }

    init(_ info: ServiceDirectory.ServiceInfo) {
        memoryBytes = info.memoryBytes
        name = info.name
        pattern = info.pattern.description
        payload = info.payload.description
        settings = Dictionary(info.settings, uniquingKeysWith: { a, _ in a })
        ports = info.ports.map(PortReport.init)
    }
}

/// A node in JSON.
struct NodeReport: Encodable {
    let name: String
    let pid: Int32
    let alive: Bool
    let createdAt: String

    enum CodingKeys: String, CodingKey { case name, pid, alive, createdAt = "created_at" }

    init(_ node: ServiceDirectory.NodeInfo) {
        name = node.name
        pid = node.process.pid
        alive = node.alive
        createdAt = isoTime(nanoseconds: node.createdAt)
    }
}

struct ServiceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "service", abstract: "Show a service: configuration, ports, backlogs and losses.")

    @Argument(help: "Service name.") var name: String
    @Flag(help: "Output JSON.") var json = false

    @OptionGroup var logging: LoggingOptions

    func run() throws {
        logging.apply()
        let info = try reporting { try ServiceDirectory.inspect(name) }
        if json { return try printJSON(ServiceReport(info)) }
        var lines = ["service:  \(info.name)", "pattern:  \(info.pattern)", "payload:  \(info.payload)"]
        for (key, value) in info.settings { lines.append("\(key):".padding(toLength: 20, withPad: " ", startingAt: 0) + value) }
        lines.append("memory:".padding(toLength: 20, withPad: " ", startingAt: 0)
                     + "\(ByteCount.format(info.memoryBytes)) in /dev/shm (service \(ByteCount.format(info.serviceSegmentBytes)), the rest in ports' pools and inboxes)")
        StandardStreams.printLine(lines.joined(separator: "\n") + "\n")
        // HELD: samples of publishers' pools a subscriber holds (queued or borrowed).
        // POOL: segments of a pool that grows with what is in flight, its chunks and their size.
        var table = Table("PORT", "ID", "PID", "ALIVE", "REGISTERED", "MEMORY", "POOL", "SENT", "BACKLOG", "HELD", "DELIVERED", "LOST")
        table.rightAligned = [2, 5, 7, 8, 9, 10, 11]
        for port in info.ports {
            table.add(port.kind, String(port.portID, radix: 16), String(port.process.pid), port.process.liveness.display,
                      port.registeredAt > 0 ? shortTime(nanoseconds: port.registeredAt) : "-",
                      port.memoryBytes.map(ByteCount.format) ?? "-", poolSummary(port), port.sent.map(String.init) ?? "-",
                      port.backlog.map(String.init) ?? "-", port.held.map(String.init) ?? "-",
                      port.delivered.map(String.init) ?? "-", port.lost.map(String.init) ?? "-")
        }
        StandardStreams.printLine(info.ports.isEmpty ? "no ports" : table.render())
        #if canImport(ShmBridge)
        let bridged = StatisticsSegment.reports().filter { report in report.services.contains { $0.name == name } }
        if !bridged.isEmpty {
            StandardStreams.printLine("\nbridged to NATS:")
            BridgeCommand.printRunningBridges(json: false, service: name)
        }
        #endif
    }
}

struct CleanupCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cleanup",
        abstract: "Remove what dead processes left: nodes, ports, unused services, abandoned segments.")

    @Flag(help: "Output JSON.") var json = false

    struct Report: Encodable {
        let deadNodes: [String], deadPorts: [String], removedServices: [String]
        let orphanSegments: [String], staleCreations: [String], abandonedSegments: [String]
        enum CodingKeys: String, CodingKey {
            case deadNodes = "dead_nodes", deadPorts = "dead_ports", removedServices = "removed_services"
            case orphanSegments = "orphan_segments", staleCreations = "stale_creations", abandonedSegments = "abandoned_segments"
        }
    }

    @OptionGroup var logging: LoggingOptions

    func run() throws {
        logging.apply()
        var report = ServiceDirectory.cleanup()
        #if canImport(ShmBridge)
        // Service claims of bridges that died (one bridge per machine per service).
        report.staleCreations += BridgeCleanup.removeStaleClaims()
        #endif
        if json {
            return try printJSON(Report(deadNodes: report.deadNodes, deadPorts: report.deadPorts, removedServices: report.removedServices,
                                        orphanSegments: report.orphanSegments, staleCreations: report.staleCreations,
                                        abandonedSegments: report.abandonedSegments))
        }
        if report.isEmpty { return StandardStreams.printLine("nothing to clean up") }
        func section(_ title: String, _ items: [String]) {
            guard !items.isEmpty else { return }
            StandardStreams.printLine("\(title) (\(items.count)):")
            for item in items { StandardStreams.printLine("  \(item)") }
        }
        section("dead nodes removed", report.deadNodes)
        section("ports of dead processes removed", report.deadPorts)
        section("unused services removed", report.removedServices)
        section("port segments without a live port removed", report.orphanSegments)
        section("segments abandoned by dead creators removed", report.abandonedSegments)
        section("half-finished creations removed", report.staleCreations)
    }
}

/// Options shared by `pub`, `sub` and `hz`.
struct ByteServiceOptions: ParsableArguments {
    @Option(name: .customLong("max-length"), help: "Bytes per sample when creating the service.")
    var maxLength = 4096

    /// The service as bytes: its own configuration if it exists, else a new bytes service.
    func open(_ name: String, node: Node) throws -> PublishSubscribeService<UInt8> {
        if ServiceDirectory.serviceNames().contains(name) { return try node.openAnyPublishSubscribe(name) }
        return try node.publishSubscribe(name, slicesOf: UInt8.self, maxLength: maxLength,
                                         config: .init(maxPublishers: 8, maxSubscribers: 16, subscriberBufferSize: 64, historySize: 1))
    }
}

struct PubCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pub", abstract: "Publish lines from stdin (or --message) as samples of a bytes service.")

    @Argument(help: "Service name (created as a bytes service if missing).") var serviceName: String
    @Option(name: .customLong("message"), help: "Publish this text instead of reading stdin (repeatable).") var messages: [String] = []
    @Option(help: "Publish the messages this many times.") var count = 1
    @Option(help: "Pause between samples, e.g. 100ms.", transform: parseDuration) var interval: Duration = .zero
    @Option(name: .customLong("wait-subscribers"), help: "Wait (up to 10 s) for this many subscribers first.") var waitSubscribers = 0
    @Option(help: ArgumentHelp("How the publisher's pool gets memory: reserved (all up front), growing (with what is in flight), automatic (growing above 1 MiB).",
                               valueName: "reserved|growing|automatic"),
            transform: parsePoolAllocation)
    var pool: PoolAllocation = .automatic
    @OptionGroup var byteService: ByteServiceOptions

    @OptionGroup var logging: LoggingOptions

    func run() throws {
        logging.apply()
        Interruptible.begin()
        let node = try reporting { try Node(name: "shm-pub") }
        let service = try reporting { try byteService.open(serviceName, node: node) }
        guard service.payloadType.name == PayloadType.byteSliceName else {
            throw CommandFailure("service '\(service.name)' carries \(service.payloadType); `shm pub` sends bytes")
        }
        let publisher = try reporting { try service.publisher(allocation: pool) }
        if waitSubscribers > 0, !(try reporting { try publisher.waitForSubscribers(waitSubscribers, timeout: .seconds(10)) }) {
            throw CommandFailure("fewer than \(waitSubscribers) subscriber(s) after 10 s (\(publisher.connectedSubscribers) connected)")
        }
        var published = 0
        func publish(_ text: String) throws {
            let bytes = Array(text.utf8)
            guard bytes.count <= service.maxSliceLength else {
                throw CommandFailure("a line of \(bytes.count) bytes exceeds the service's \(service.maxSliceLength)-byte samples")
            }
            try Interruptible.check()
            _ = try reporting { try publisher.send(copyOf: bytes) }
            published += 1
            if interval > .zero { usleep(UInt32(interval.nanoseconds / 1000)) } // EINTR ends it early
        }
        defer { StandardStreams.printError("published \(published) sample\(published == 1 ? "" : "s") to \(service.name)") }
        if messages.isEmpty {
            // Not readLine(): it retries EINTR, so a signal could not stop it.
            let input = LineReader()
            reading: while true {
                try Interruptible.check()
                switch input.next(waiting: Interruptible.slice) {
                case .line(let line): try publish(line)
                case .nothingYet: continue
                case .end: break reading
                }
            }
        } else {
            for _ in 0..<count { for message in messages { try publish(message) } }
        }
        try Interruptible.check()
    }
}

struct SubCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sub", abstract: "Print the samples that arrive on a service.")

    @Argument(help: "Service name.") var serviceName: String
    @Option(help: "Stop after this many samples.") var count: Int?
    @Option(help: "Give up after this long without a sample, e.g. 5s (default: wait for ever).", transform: parseDuration)
    var timeout: Duration?
    @Flag(help: "Print samples as hex even if they are text.") var hex = false
    @Flag(help: "One JSON object per sample.") var json = false
    @Option(help: "Replay the service's past from this recording (shm record) first, then continue live without a gap or duplicate.")
    var replay: String?
    @OptionGroup var byteService: ByteServiceOptions

    struct Line: Encodable {
        let sequence: UInt64
        let publisher: String
        let bytes: Int
        let text: String?
        let hex: String?
    }

    func printSample(sequence: UInt64, publisher: UInt64, bytes: [UInt8]) throws {
        let text = hex ? nil : String(validating: bytes, as: UTF8.self).flatMap { $0.allSatisfy({ !$0.isASCII || $0.isPrintable }) ? $0 : nil }
        let hexText = bytes.map { String(format: "%02x", $0) }.joined()
        if json {
            try printJSONLine(Line(sequence: sequence, publisher: String(publisher, radix: 16), bytes: bytes.count,
                                   text: text, hex: text == nil ? hexText : nil))
        } else {
            StandardStreams.printLine(text ?? hexText)
        }
    }

    func runReplaying(_ recording: String) throws {
        let node = try reporting { try Node(name: "shm-sub") }
        let replaying = try reporting { try ReplayingSubscriber(node: node, service: serviceName, recording: recording) }
        var received = 0
        while count.map({ received < $0 }) ?? true {
            let next = try Interruptible.wait(timeout: timeout) { slice -> ReplayedSample? in
                do { return try replaying.receive(timeout: slice) } catch {
                    if case ServiceError.timedOut = error { return nil }
                    throw CommandFailure("\(error)")
                }
            }
            guard let sample = consume next else {
                throw CommandFailure("no sample within \(timeout.map { "\($0)" } ?? "the timeout") (\(received) received)")
            }
            received += 1
            try printSample(sequence: sample.sequence, publisher: sample.publisherID, bytes: sample.withBytes { Array($0) })
        }
    }

    @OptionGroup var logging: LoggingOptions

    func run() throws {
        logging.apply()
        Interruptible.begin()
        if let replay { return try runReplaying(replay) }
        let node = try reporting { try Node(name: "shm-sub") }
        let service = try reporting { try byteService.open(serviceName, node: node) }
        let subscriber = try reporting { try service.subscriber() }
        var received = 0
        while count.map({ received < $0 }) ?? true {
            let next = try Interruptible.wait(timeout: timeout) { slice -> ReceivedSample<UInt8>? in
                do throws(ServiceError) {
                    return try subscriber.receive(timeout: slice)
                } catch {
                    if case .timedOut = error { return nil }
                    throw CommandFailure(error.description)
                }
            }
            guard let sample = consume next else {
                throw CommandFailure("no sample within \(timeout.map { "\($0)" } ?? "the timeout") (\(received) received)")
            }
            received += 1
            try printSample(sequence: sample.sequence, publisher: sample.publisherID, bytes: Array(sample.unsafeBuffer))
        }
    }
}

extension Character {
    var isPrintable: Bool { !(isASCII && (asciiValue ?? 0) < 0x20 && self != "\t") }
}

struct HzCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hz", abstract: "Show the rate of samples on a service.")

    @Argument(help: "Service name.") var serviceName: String
    @Option(help: "Report every, e.g. 1s.", transform: parseDuration) var window: Duration = .seconds(1)
    @Option(help: "Stop after this long (default: for ever).", transform: parseDuration) var duration: Duration?
    @Flag(help: "One JSON object per window.") var json = false
    @OptionGroup var byteService: ByteServiceOptions

    struct Line: Encodable {
        let samples: Int
        let seconds: Double
        let rate: Double
        enum CodingKeys: String, CodingKey { case samples, seconds, rate = "msgs_per_s" }
    }

    @OptionGroup var logging: LoggingOptions

    func run() throws {
        logging.apply()
        Interruptible.begin()
        let node = try reporting { try Node(name: "shm-hz") }
        let service = try reporting { try byteService.open(serviceName, node: node) }
        let subscriber = try reporting { try service.subscriber() }
        let start = monotonicNanoseconds()
        var windowStart = start, samples = 0
        while duration.map({ monotonicNanoseconds() - start < $0.nanoseconds }) ?? true {
            let windowEnd = windowStart + window.nanoseconds
            let now = monotonicNanoseconds()
            try Interruptible.check()
            if now < windowEnd {
                let wait = min(Interruptible.slice, Duration.nanoseconds(Int64(windowEnd - now)))
                if (try? subscriber.receive(timeout: wait)) != nil { samples += 1 }
                continue
            }
            let seconds = Double(now - windowStart) / 1e9
            if json {
                try printJSONLine(Line(samples: samples, seconds: seconds, rate: Double(samples) / seconds))
            } else {
                StandardStreams.printLine("\(service.name): \(String(format2: Double(samples) / seconds)) msgs/s (\(samples) in \(String(format2: seconds)) s)")
            }
            windowStart = now
            samples = 0
        }
    }
}

/// Parses `100ms`, `2s`, `1.5s`, `250us`.
func parseDuration(_ text: String) throws -> Duration {
    let units: [(String, Double)] = [("ms", 1e-3), ("us", 1e-6), ("µs", 1e-6), ("ns", 1e-9), ("s", 1), ("m", 60)]
    for (suffix, scale) in units where text.hasSuffix(suffix) {
        if let value = Double(text.dropLast(suffix.count)), value >= 0 { return .nanoseconds(Int64(value * scale * 1e9)) }
    }
    if let seconds = Double(text), seconds >= 0 { return .nanoseconds(Int64(seconds * 1e9)) }
    throw ValidationError("invalid duration '\(text)': use e.g. 100ms, 2s, 250us")
}

#if canImport(Glibc)
import Glibc
#endif

/// `--pool reserved|growing|automatic`.
func parsePoolAllocation(_ text: String) throws -> PoolAllocation {
    switch text {
    case "reserved": return .reserved
    case "growing": return .growing()
    case "automatic": return .automatic
    default: throw ValidationError("--pool is reserved, growing or automatic, not '\(text)'")
    }
}
