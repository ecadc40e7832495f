import ArgumentParser
import Histogram
import Shm
#if canImport(Glibc)
import Glibc
#endif

/// One latency cell of a service benchmark, with the floor measured just
/// before each of its rounds.
struct ServiceLatencyRow: Encodable {
    let kind = "latency"
    let mechanism: String
    let subscribers: Int?
    let payloadBytes: Int
    let samples: UInt64
    let minNs: UInt64, p50Ns: UInt64, p99Ns: UInt64, p999Ns: UInt64, maxNs: UInt64
    /// Median over rounds of (p50 ÷ the floor's one-way p50 just before).
    let ratioToFloor: Double?
    let p99RatioToFloor: Double?
    let roundP50Ns: [UInt64]
    let note: String?

    enum CodingKeys: String, CodingKey {
        case kind, mechanism, subscribers, samples, note
        case payloadBytes = "payload_bytes", minNs = "min_ns", p50Ns = "p50_ns", p99Ns = "p99_ns", p999Ns = "p999_ns"
        case maxNs = "max_ns", ratioToFloor = "ratio_to_floor", p99RatioToFloor = "p99_ratio_to_floor", roundP50Ns = "round_p50_ns"
    }
}

/// One throughput cell of a service benchmark.
struct ServiceThroughputRow: Encodable {
    let kind = "throughput"
    let mechanism: String
    let subscribers: Int?
    let payloadBytes: Int
    let messages: Int
    /// Median over rounds: messages published (or requests answered) per second.
    let msgsPerS: Double
    /// Samples delivered per second, over all subscribers.
    let deliveriesPerS: Double
    /// Median over rounds of this cell ÷ the baseline in the same round.
    let ratioToBaseline: Double?
    let baseline: String
    let roundMsgsPerS: [Double]
    let note: String?

    enum CodingKeys: String, CodingKey {
        case kind, mechanism, subscribers, messages, baseline, note
        case payloadBytes = "payload_bytes", msgsPerS = "msgs_per_s", deliveriesPerS = "deliveries_per_s"
        case ratioToBaseline = "ratio_to_baseline", roundMsgsPerS = "round_msgs_per_s"
    }
}

/// Latency cells measured round by round, each paired with a floor run.
struct PairedLatency {
    let pingPong: PingPong
    let floorPingPong: PingPong
    let childCPU: Int?
    var histogram = latencyHistogram()
    var roundP50: [UInt64] = []
    var p50Ratios: [Double] = []
    var p99Ratios: [Double] = []
    var failure: String?

    init(duration: Double, maxRounds: Int, oneWay: Bool, childCPU: Int?) {
        pingPong = PingPong(duration: duration, maxRounds: maxRounds, oneWay: oneWay)
        floorPingPong = PingPong(duration: duration, maxRounds: maxRounds)
        self.childCPU = childCPU
    }

    /// Measures the floor, then the cell; records the cell and its ratios.
    mutating func round(floor: inout Histogram<UInt64>, _ session: () throws -> BenchSession) {
        guard let floorRun = try? floorPingPong.measure(BenchSetup.parent(.floor, size: 8), childCPU: childCPU) else { return }
        floor.add(floorRun)
        do {
            let run = try pingPong.measure(session(), childCPU: childCPU)
            histogram.add(run)
            roundP50.append(run.valueAtPercentile(50))
            p50Ratios.append(Double(run.valueAtPercentile(50)) / Double(max(1, floorRun.valueAtPercentile(50))))
            p99Ratios.append(Double(run.valueAtPercentile(99)) / Double(max(1, floorRun.valueAtPercentile(99))))
        } catch {
            failure = "n/a: \(error)"
        }
    }

    func row(_ mechanism: String, subscribers: Int?, size: Int) -> ServiceLatencyRow {
        let h = histogram
        guard h.totalCount > 0 else {
            return ServiceLatencyRow(mechanism: mechanism, subscribers: subscribers, payloadBytes: size, samples: 0, minNs: 0, p50Ns: 0,
                                     p99Ns: 0, p999Ns: 0, maxNs: 0, ratioToFloor: nil, p99RatioToFloor: nil, roundP50Ns: [],
                                     note: failure ?? "n/a")
        }
        return ServiceLatencyRow(mechanism: mechanism, subscribers: subscribers, payloadBytes: size, samples: h.totalCount,
                                 minNs: h.min, p50Ns: h.valueAtPercentile(50), p99Ns: h.valueAtPercentile(99),
                                 p999Ns: h.valueAtPercentile(99.9), maxNs: h.max, ratioToFloor: median(p50Ratios),
                                 p99RatioToFloor: median(p99Ratios), roundP50Ns: roundP50, note: failure)
    }
}

func floorRow(_ floor: Histogram<UInt64>) -> ServiceLatencyRow {
    ServiceLatencyRow(mechanism: BenchMechanism.floor.rawValue, subscribers: nil, payloadBytes: 8, samples: floor.totalCount,
                      minNs: floor.min, p50Ns: floor.valueAtPercentile(50), p99Ns: floor.valueAtPercentile(99),
                      p999Ns: floor.valueAtPercentile(99.9), maxNs: floor.max, ratioToFloor: 1, p99RatioToFloor: 1,
                      roundP50Ns: [], note: nil)
}

func renderLatency(_ rows: [ServiceLatencyRow], label: (ServiceLatencyRow) -> String) {
    var table = Table("MECHANISM", "PAYLOAD", "MIN", "P50", "P99", "P99.9", "P50 ÷ FLOOR", "P99 ÷ FLOOR", "P50 PER ROUND")
    table.rightAligned = [1, 2, 3, 4, 5, 6, 7]
    for row in rows {
        if row.samples == 0 {
            table.add(label(row), ByteCount.format(row.payloadBytes), "-", "-", "-", "-", "-", "-", row.note ?? "n/a")
            continue
        }
        table.add(label(row), ByteCount.format(row.payloadBytes), formatNanoseconds(Double(row.minNs)),
                  formatNanoseconds(Double(row.p50Ns)), formatNanoseconds(Double(row.p99Ns)), formatNanoseconds(Double(row.p999Ns)),
                  row.ratioToFloor.map(formatRatio) ?? "-", row.p99RatioToFloor.map(formatRatio) ?? "-",
                  row.mechanism == BenchMechanism.floor.rawValue ? "one run before each cell"
                      : row.roundP50Ns.map { formatNanoseconds(Double($0)) }.joined(separator: " "))
    }
    StandardStreams.printLine(table.render())
}

func renderThroughput(_ rows: [ServiceThroughputRow], label: (ServiceThroughputRow) -> String) {
    var table = Table("MECHANISM", "PAYLOAD", "MESSAGES", "MSGS/S", "DELIVERIES/S", "÷ BASELINE", "BASELINE", "MSGS/S PER ROUND")
    table.rightAligned = [1, 2, 3, 4, 5]
    for row in rows {
        if row.msgsPerS == 0 {
            table.add(label(row), ByteCount.format(row.payloadBytes), "-", "-", "-", "-", row.baseline, row.note ?? "n/a")
            continue
        }
        table.add(label(row), ByteCount.format(row.payloadBytes), String(row.messages), formatRate(row.msgsPerS),
                  formatRate(row.deliveriesPerS), row.ratioToBaseline.map(formatRatio) ?? "-", row.baseline,
                  row.roundMsgsPerS.map(formatRate).joined(separator: " "))
    }
    StandardStreams.printLine(table.render())
}

func parseCounts(_ text: String) throws -> [Int] {
    try text.split(separator: ",").map { part in
        guard let n = Int(part), (1...64).contains(n) else { throw ValidationError("subscriber counts are 1…64, got '\(part)'") }
        return n
    }
}

/// `shm bench pubsub`: publish/subscribe latency and throughput, 1 publisher
/// to N subscribers, against the floor and our raw ring.
struct PubSubBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pubsub",
        abstract: "Publish/subscribe latency and throughput, 1 publisher to 1, 4 and 16 subscribers, against the floor.",
        discussion: """
            Latency: the parent publishes a sample to N subscribers in the peer process; once all N have it the \
            peer publishes it back on a second service; one-way = round trip / 2. Zero-copy as in the iceoryx2 \
            benchmarks: each sample is loaned in the publisher's pool, only its 8-byte sequence number is written, \
            and it is read in place. Throughput: the parent publishes as fast as the peer's N subscribers take \
            the samples (overflow policy `block`: nothing is lost); the baseline is our SPSC ring streaming \
            zero-copy at the same size in the same round.
            """)

    @OptionGroup var options: BenchOptions
    @Option(help: "Payload sizes.", transform: parseSizes) var sizes: [Int] = [8, 64, 512, 4096, 65536, 1 << 20, 4 << 20]
    @Option(help: "Subscriber counts.", transform: parseCounts) var subscribers: [Int] = [1, 4, 16]
    @Option(help: "How receivers wait: spin (poll), default (spin then park), block.") var wait: BenchWait = .spin
    @Option(help: "How publishers' pools get memory: reserved, growing, automatic (growing above 1 MiB).",
            transform: { text in _ = try parsePoolAllocation(text); return text })
    var pool = "automatic"
    @Option(help: "Latency cells' overflow policy: overwrite (the default policy), discard, block.", transform: parseOverflow)
    var overflow: OverflowPolicy = .overwriteOldest
    @Option(help: "Latency: measuring time per cell and round, seconds.") var duration: Double = 0.2
    @Option(name: .customLong("max-rounds"), help: "Latency: round trips per cell and round at most.") var maxRounds = 200_000
    @Option(help: "Throughput: bytes to publish per cell (capped by --max-messages).", transform: Size.parse)
    var bytes = Size(bytes: 256 << 20)
    @Option(name: .customLong("max-messages"), help: "Throughput: samples per cell at most.") var maxMessages = 200_000
    @Flag(name: .customLong("latency-only")) var latencyOnly = false
    @Flag(name: .customLong("throughput-only")) var throughputOnly = false
    @Flag(help: "Only the software cost: loan, send, receive and release in one thread, no other process.")
    var local = false
    @Option(help: "Rounds over all cells; figures are medians over rounds.") var `repeat` = 3

    func run() throws {
        warnIfDebugBuild()
        guard `repeat` >= 1, duration > 0 else { throw ValidationError("--repeat and --duration must be positive") }
        let childCPU = try options.pinParent()
        if local { return try measureLocal() }
        let cells = subscribers.flatMap { n in sizes.map { (n, $0) } }
        var progress = Progress(enabled: !options.json,
                                total: `repeat` * cells.count * ((latencyOnly ? 0 : 1) + (throughputOnly ? 0 : 1)))
        var latencyRows: [ServiceLatencyRow] = []
        if !throughputOnly {
            var floor = latencyHistogram()
            var paired = cells.map { _ in PairedLatency(duration: duration, maxRounds: maxRounds, oneWay: true, childCPU: childCPU) }
            for round in 1...`repeat` {
                for (index, (n, size)) in cells.enumerated() {
                    progress.step("latency round \(round)/\(`repeat`): 1→\(n), \(ByteCount.format(size))")
                    paired[index].round(floor: &floor) {
                        try BenchSetup.parent(.pubsub, size: size, service: ServiceBenchParameters(subscribers: n, wait: wait, pool: pool,
                                                                                           overflow: overflow))
                    }
                }
            }
            latencyRows = [floorRow(floor)] + zip(cells, paired).map { cell, p in p.row("pubsub", subscribers: cell.0, size: cell.1) }
        }
        var throughputRows: [ServiceThroughputRow] = []
        if !latencyOnly {
            throughputRows = try measureThroughput(cells, childCPU: childCPU, progress: &progress)
        }
        progress.clear()
        if options.json {
            for row in latencyRows { try printJSONLine(row) }
            for row in throughputRows { try printJSONLine(row) }
            return
        }
        let label: (ServiceLatencyRow) -> String = { row in
            row.subscribers.map { "pub/sub 1→\($0)" } ?? "floor: cache-line ping-pong"
        }
        if !latencyRows.isEmpty {
            StandardStreams.printLine("Publish/subscribe one-way latency (round trip / 2, delivery to all N subscribers), processes pinned to CPUs \(options.cpus), receivers wait: \(wait.rawValue), \(`repeat`) rounds.\n")
            renderLatency(latencyRows, label: label)
        }
        if !throughputRows.isEmpty {
            StandardStreams.printLine("\nPublish/subscribe throughput (overflow policy block, nothing lost), \(`repeat`) rounds (medians).\n")
            renderThroughput(throughputRows) { row in row.subscribers.map { "pub/sub 1→\($0)" } ?? row.mechanism }
        }
        StandardStreams.printLine("\n" + ServiceTargets(latency: latencyRows).pubsubReport())
    }

    /// Software cost per sample with publisher and subscribers in this
    /// thread: no cache line crosses cores, so this is pure instruction cost.
    func measureLocal() throws {
        for n in subscribers {
            for size in sizes {
                let node = try Node(name: "bench-local")
                let name = "bench.\(getpid()).local.\(n).\(size)"
                let service = try node.publishSubscribe(name, slicesOf: UInt8.self, maxLength: size,
                                                        config: PubSubEndpoint.config(ServiceBenchParameters(subscribers: n), size: size))
                let publisher = try service.publisher(allocation: ServiceBenchParameters(pool: pool).allocation)
                let subs = try (0..<n).map { _ in try service.subscriber(waitStrategy: .busySpin) }
                var times: [Double] = []
                for _ in 0..<5 {
                    let rounds = 200_000
                    let start = monotonicNanoseconds()
                    for seq in 0..<UInt64(rounds) {
                        let sample = try publisher.loanUninitialized(count: size)
                        UnsafeMutableRawPointer(sample.unsafeBuffer.baseAddress!).storeBytes(of: seq, as: UInt64.self)
                        _ = try sample.assumeInitialized().send()
                        for sub in subs {
                            guard let got = try sub.tryReceive(), got.unsafeBytes.load(as: UInt64.self) == seq else {
                                throw BenchFailure("lost \(seq)")
                            }
                        }
                    }
                    times.append(Double(monotonicNanoseconds() - start) / Double(rounds))
                }
                StandardStreams.printLine("1→\(n) \(ByteCount.format(size)): \(String(format2: median(times) ?? 0)) ns per sample (loan+send+\(n)×receive+release)")
            }
        }
    }

    func measureThroughput(_ cells: [(Int, Int)], childCPU: Int?, progress: inout Progress) throws -> [ServiceThroughputRow] {
        var ring = try ThroughputBenchCommand.parse([])
        ring.maxMessages = maxMessages
        var rates = cells.map { _ in [Double]() }
        var ratios = cells.map { _ in [Double]() }
        var failures = cells.map { _ -> String? in nil }
        let counts = cells.map { max(100, min(maxMessages, bytes.bytes / max($0.1, 1))) }
        for round in 1...`repeat` {
            var baseline: [Int: Double] = [:]
            for (index, (n, size)) in cells.enumerated() {
                progress.step("throughput round \(round)/\(`repeat`): 1→\(n), \(ByteCount.format(size))")
                if baseline[size] == nil {
                    baseline[size] = (try? ring.measure(.ringZeroCopy, size: size, count: counts[index], childCPU: childCPU))?.msgsPerS ?? 0
                }
                do {
                    let parameters = ServiceBenchParameters(subscribers: n, wait: wait, streaming: true, pool: pool)
                    let session = try BenchSetup.parent(.pubsub, size: size, service: parameters)
                    guard let endpoint = session.endpoint as? PubSubEndpoint else { throw BenchFailure("not a pub/sub session") }
                    let child = try spawnBenchPeer(session, role: "drain", childCPU: childCPU, extra: ["--count", String(counts[index])])
                    let elapsed: UInt64
                    do { elapsed = try endpoint.stream(count: counts[index]) } catch {
                        child.kill()
                        _ = try? child.wait(timeout: .seconds(5))
                        throw BenchFailure("\(error); peer: \(child.errorText)")
                    }
                    try finish(child)
                    let rate = Double(counts[index]) / (Double(elapsed) / 1e9)
                    rates[index].append(rate)
                    if let base = baseline[size], base > 0 { ratios[index].append(rate / base) }
                } catch {
                    failures[index] = "n/a: \(error)"
                }
            }
        }
        return cells.enumerated().map { index, cell in
            let rate = median(rates[index]) ?? 0
            return ServiceThroughputRow(mechanism: "pubsub", subscribers: cell.0, payloadBytes: cell.1, messages: counts[index],
                                        msgsPerS: rate, deliveriesPerS: rate * Double(cell.0), ratioToBaseline: median(ratios[index]),
                                        baseline: "ring zero-copy", roundMsgsPerS: rates[index], note: failures[index])
        }
    }
}

/// `shm bench rr`: request/response round trips and pipelined throughput.
struct RequestResponseBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rr",
        abstract: "Request/response round-trip latency and throughput against the floor and a Unix socket.",
        discussion: """
            The parent is the client, the peer the server; the server answers each request with a response of the \
            same size. Latency is the whole round trip (request and response), compared with the floor's ONE-WAY \
            latency and with publish/subscribe 1→1 one-way at 8 B measured in the same round. Zero-copy, as the \
            pub/sub benchmark: requests and responses are loaned, only their first word written, and read in place \
            (sizes 8 B to 4 MiB); --copy measures the copying calls instead (send(_:), receive(), respond(_:), \
            response(); up to 4 KiB). Throughput: the client keeps --window requests outstanding; the baseline is \
            Unix-socket round trips per second (1 ÷ its round trip) in the same round.
            """)

    @OptionGroup var options: BenchOptions
    @Option(help: "Message sizes: 8, 64, 512, 4096, 64KiB, 1MiB, 4MiB.", transform: parseSizes)
    var sizes: [Int] = [8, 64, 4096, 65536, 1 << 20, 4 << 20]
    @Flag(help: "Measure the copying calls (sizes up to 4 KiB) instead of loans read in place.") var copy = false
    @Option(help: "How client and server wait: spin, default (spin then park), block.") var wait: BenchWait = .spin
    @Option(help: "Latency: measuring time per cell and round, seconds.") var duration: Double = 0.2
    @Option(name: .customLong("max-rounds"), help: "Latency: round trips per cell and round at most.") var maxRounds = 200_000
    @Option(help: "Throughput: requests per cell.") var requests = 200_000
    @Option(help: "Throughput: requests outstanding at once.") var window = 32
    @Option(help: "Rounds over all cells; figures are medians over rounds.") var `repeat` = 3

    func run() throws {
        warnIfDebugBuild()
        guard `repeat` >= 1, duration > 0, (1...64).contains(window) else {
            throw ValidationError("--repeat and --duration must be positive, --window 1…64")
        }
        for size in sizes where !requestResponseSizes.contains(size) {
            throw ValidationError("request/response sizes are \(requestResponseSizes.map(String.init).joined(separator: ", ")) bytes, not \(size)")
        }
        if copy, let size = sizes.first(where: { $0 > requestResponseCopyLimit }) {
            throw ValidationError("--copy measures sizes up to \(requestResponseCopyLimit) bytes, not \(size)")
        }
        let childCPU = try options.pinParent()
        var progress = Progress(enabled: !options.json, total: `repeat` * (sizes.count * 2 + 1))
        var floor = latencyHistogram()
        var paired = sizes.map { _ in PairedLatency(duration: duration, maxRounds: maxRounds, oneWay: false, childCPU: childCPU) }
        // Pub/sub 1→1 one-way at 8 B, the issue's yardstick for a round trip.
        var pubsub = PairedLatency(duration: duration, maxRounds: maxRounds, oneWay: true, childCPU: childCPU)
        var rates = sizes.map { _ in [Double]() }
        var ratios = sizes.map { _ in [Double]() }
        var failures = sizes.map { _ -> String? in nil }
        let parameters = ServiceBenchParameters(subscribers: 1, wait: wait, copy: copy)
        let unixPingPong = PingPong(duration: duration / 2, maxRounds: maxRounds)
        for round in 1...`repeat` {
            progress.step("latency round \(round)/\(`repeat`): pub/sub 1→1 8 B")
            pubsub.round(floor: &floor) { try BenchSetup.parent(.pubsub, size: 8, service: ServiceBenchParameters(subscribers: 1, wait: wait)) }
            for (index, size) in sizes.enumerated() {
                progress.step("latency round \(round)/\(`repeat`): \(ByteCount.format(size))")
                paired[index].round(floor: &floor) { try BenchSetup.parent(.requestResponse, size: size, service: parameters) }
                progress.step("throughput round \(round)/\(`repeat`): \(ByteCount.format(size))")
                do {
                    let session = try BenchSetup.parent(.requestResponse, size: size, service: parameters)
                    guard let endpoint = session.endpoint as? any RequestStreaming else { throw BenchFailure("not a request/response session") }
                    let child = try spawnBenchPeer(session, role: "pong", childCPU: childCPU)
                    let elapsed: UInt64
                    do {
                        elapsed = try endpoint.stream(count: requests, window: window)
                        try endpoint.send(.max)
                    } catch {
                        child.kill()
                        _ = try? child.wait(timeout: .seconds(5))
                        throw BenchFailure("\(error); peer: \(child.errorText)")
                    }
                    try finish(child)
                    let rate = Double(requests) / (Double(elapsed) / 1e9)
                    rates[index].append(rate)
                    if let unix = try? unixPingPong.measure(BenchSetup.parent(.unix, size: size), childCPU: childCPU) {
                        ratios[index].append(rate / (1e9 / Double(2 * max(1, unix.valueAtPercentile(50)))))
                    }
                } catch {
                    failures[index] = "n/a: \(error)"
                }
            }
        }
        progress.clear()
        let latencyRows = [floorRow(floor), pubsub.row("pubsub", subscribers: 1, size: 8)]
            + zip(sizes, paired).map { size, p in p.row("rr", subscribers: nil, size: size) }
        // Per round: the first size's round trip p50 ÷ pub/sub's one-way p50 just before it.
        let perRound = zip(paired.first?.roundP50 ?? [], pubsub.roundP50).map { Double($0) / Double(max(1, $1)) }
        let throughputRows = sizes.enumerated().map { index, size in
            let rate = median(rates[index]) ?? 0
            return ServiceThroughputRow(mechanism: "rr", subscribers: nil, payloadBytes: size, messages: requests, msgsPerS: rate,
                                        deliveriesPerS: rate, ratioToBaseline: median(ratios[index]),
                                        baseline: "Unix socket round trips/s", roundMsgsPerS: rates[index], note: failures[index])
        }
        if options.json {
            for row in latencyRows { try printJSONLine(row) }
            for row in throughputRows { try printJSONLine(row) }
            return
        }
        StandardStreams.printLine("Request/response round trip, \(copy ? "copying calls" : "zero-copy") (floor and pub/sub rows: ONE-WAY), processes pinned to CPUs \(options.cpus), waiting: \(wait.rawValue), \(`repeat`) rounds.\n")
        renderLatency(latencyRows) { row in
            switch row.mechanism {
            case "rr": "request/response round trip"
            case "pubsub": "pub/sub 1→1 (one-way)"
            default: "floor: cache-line ping-pong (one-way)"
            }
        }
        let capped = sizes.filter { requestResponseBenchConfig(size: $0).queueDepth < window }
            .map { "\(requestResponseBenchConfig(size: $0).queueDepth) at \(ByteCount.format($0))" }
        StandardStreams.printLine("\nRequest/response throughput, \(window) requests outstanding\(capped.isEmpty ? "" : " (capped at the queue depth: \(capped.joined(separator: ", ")))"), \(`repeat`) rounds (medians).\n")
        renderThroughput(throughputRows) { _ in "request/response" }
        StandardStreams.printLine("\n" + ServiceTargets(latency: latencyRows).requestResponseReport(firstSize: sizes.first,
                                                                                                   perRoundToPubSub: median(perRound)))
    }
}

/// The issue's service targets, checked against one run's rows.
struct ServiceTargets {
    let latency: [ServiceLatencyRow]

    func row(_ mechanism: String, subscribers: Int?, _ size: Int) -> ServiceLatencyRow? {
        latency.first { $0.mechanism == mechanism && $0.subscribers == subscribers && $0.payloadBytes == size && $0.samples > 0 }
    }

    func check(_ what: String, _ value: Double?, _ limit: Double) -> String {
        guard let value else { return "  ? \(what): not measured" }
        return "  \(value <= limit ? "met " : "MISSED") \(what): \(formatRatio(value)) (target ≤ \(formatRatio(limit)))"
    }

    func pubsubReport() -> String {
        var lines = ["Targets (ratios within this run):"]
        guard let small = row("pubsub", subscribers: 1, 8) else { return lines.joined() }
        // Issue #12's targets (round 1 had asked ≤ 1.3x of the 1→1 one-way).
        lines.append(check("pub/sub 1→1 one-way p50 ÷ floor p50 (8 B)", small.ratioToFloor, 2.0))
        let sizes = latency.filter { $0.mechanism == "pubsub" && $0.subscribers == 1 && $0.samples > 0 }.map(\.payloadBytes)
        if let largest = sizes.max(), largest > 8, let big = row("pubsub", subscribers: 1, largest),
           let x = big.ratioToFloor, let y = small.ratioToFloor, y > 0 {
            lines.append(check("pub/sub 1→1 p50 at \(ByteCount.format(largest)) ÷ at 8 B (flat)", x / y, 1.2))
        }
        if let fanOut = row("pubsub", subscribers: 16, 8) {
            lines.append(check("pub/sub 1→16 one-way p50 ÷ floor p50 (8 B)", fanOut.ratioToFloor, 6.0))
        }
        return lines.joined(separator: "\n")
    }

    /// `perRoundToPubSub`: median over rounds of the first size's round
    /// trip p50 ÷ pub/sub 1→1 one-way p50 (8 B) in the same round.
    func requestResponseReport(firstSize: Int?, perRoundToPubSub: Double?) -> String {
        var lines = ["Targets (ratios within this run):"]
        if firstSize == 8 {
            lines.append(check("request/response round trip p50 (8 B) ÷ pub/sub 1→1 one-way p50 (8 B)", perRoundToPubSub, 2.2))
        }
        let sizes = latency.filter { $0.mechanism == "rr" && $0.samples > 0 }.map(\.payloadBytes)
        if let largest = sizes.max(), largest > 8, let big = row("rr", subscribers: nil, largest), let small = row("rr", subscribers: nil, 8),
           let x = big.ratioToFloor, let y = small.ratioToFloor, y > 0 {
            lines.append(check("request/response p50 at \(ByteCount.format(largest)) ÷ at 8 B (flat)", x / y, 1.2))
        }
        return lines.joined(separator: "\n")
    }
}
