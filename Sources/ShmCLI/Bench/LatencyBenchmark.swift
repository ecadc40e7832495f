import ArgumentParser
import Histogram
import Shm

/// `shm bench latency`: one-way latency (round trip / 2) between two pinned
/// processes, for every mechanism and payload size, against the floor
/// measured in the same run.
struct LatencyBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "latency",
        abstract: "One-way latency (round trip / 2) of our ring against every other IPC on the box.",
        discussion: """
            Zero-copy ring rows claim the payload in shared memory and commit it without rewriting it each \
            round (only an 8-byte sequence number is written), as the iceoryx2 benchmarks do; "ring copy" \
            copies the whole payload in and out. Pipes, sockets and message queues copy the whole payload.
            """)

    @OptionGroup var options: BenchOptions
    @Option(help: "Payload sizes.", transform: parseSizes) var sizes: [Int] = [8, 64, 512, 4096, 65536, 1 << 20, 4 << 20]
    @Option(help: "Mechanisms (comma-separated); default all.", transform: parseMechanisms)
    var mechanisms: [BenchMechanism] = BenchMechanism.allCases
    @Option(help: "Measuring time per cell, seconds.") var duration: Double = 0.3
    @Option(name: .customLong("max-rounds"), help: "Round trips per cell at most.") var maxRounds = 200_000

    struct Row: Encodable {
        let mechanism: String
        let label: String
        let payloadBytes: Int
        let samples: UInt64
        let minNs: UInt64, p50Ns: UInt64, p99Ns: UInt64, p999Ns: UInt64, maxNs: UInt64
        var ratioToFloor: Double?
        var ratioToUnixSocket: Double?
        let note: String?

        enum CodingKeys: String, CodingKey {
            case mechanism, label, samples, note
            case payloadBytes = "payload_bytes", minNs = "min_ns", p50Ns = "p50_ns", p99Ns = "p99_ns"
            case p999Ns = "p999_ns", maxNs = "max_ns", ratioToFloor = "ratio_to_floor", ratioToUnixSocket = "ratio_to_unix_socket"
        }
    }

    func run() throws {
        warnIfDebugBuild()
        let childCPU = try options.pinParent()
        var cells: [(BenchMechanism, Int)] = []
        for mechanism in mechanisms {
            for size in mechanism.payloadless ? [8] : sizes { cells.append((mechanism, size)) }
        }
        var progress = Progress(enabled: !options.json, total: cells.count)
        var rows: [Row] = []
        for (mechanism, size) in cells {
            progress.step("\(mechanism.label), \(ByteCount.format(size))")
            do {
                rows.append(try measure(mechanism, size: size, childCPU: childCPU))
            } catch {
                rows.append(Row(mechanism: mechanism.rawValue, label: mechanism.label, payloadBytes: size, samples: 0,
                                minNs: 0, p50Ns: 0, p99Ns: 0, p999Ns: 0, maxNs: 0, note: "n/a: \(error)"))
            }
        }
        progress.clear()
        let floor = rows.first { $0.mechanism == BenchMechanism.floor.rawValue && $0.samples > 0 }
        for i in rows.indices where rows[i].samples > 0 {
            if let floor { rows[i].ratioToFloor = Double(rows[i].p50Ns) / Double(max(1, floor.p50Ns)) }
            if let unix = rows.first(where: { $0.mechanism == "unix" && $0.payloadBytes == rows[i].payloadBytes && $0.samples > 0 }) {
                rows[i].ratioToUnixSocket = Double(rows[i].p50Ns) / Double(max(1, unix.p50Ns))
            }
        }
        if options.json {
            for row in rows { try printJSONLine(row) }
            return
        }
        render(rows, floor: floor)
    }

    func measure(_ mechanism: BenchMechanism, size: Int, childCPU: Int?) throws -> Row {
        let session = try BenchSetup.parent(mechanism, size: size)
        let child = try spawnBenchPeer(session, role: "pong", childCPU: childCPU)
        var histogram = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000_000,
                                          numberOfSignificantValueDigits: .three)
        do {
            try pingPong(session.endpoint, histogram: &histogram)
        } catch {
            child.kill()
            _ = try? child.wait(timeout: .seconds(5))
            throw BenchFailure("\(error); peer: \(child.errorText)")
        }
        try finish(child)
        return Row(mechanism: mechanism.rawValue, label: mechanism.label, payloadBytes: size,
                   samples: histogram.totalCount, minNs: histogram.min, p50Ns: histogram.valueAtPercentile(50),
                   p99Ns: histogram.valueAtPercentile(99), p999Ns: histogram.valueAtPercentile(99.9),
                   maxNs: histogram.max, ratioToFloor: nil, ratioToUnixSocket: nil, note: nil)
    }

    /// Warm-up (a tenth of the budget), then timed round trips.
    func pingPong(_ endpoint: some BenchEndpoint, histogram: inout Histogram<UInt64>) throws {
        let budget = UInt64(duration * 1e9)
        var seq: UInt64 = 0
        let warmupEnd = monotonicNanoseconds() + budget / 10
        while monotonicNanoseconds() < warmupEnd && seq < UInt64(maxRounds / 10 + 100) {
            try endpoint.send(seq)
            guard try endpoint.receive() == seq else { throw BenchFailure("sequence mismatch in warm-up") }
            seq += 1
        }
        let end = monotonicNanoseconds() + budget
        var rounds = 0
        while rounds < maxRounds {
            let t0 = monotonicNanoseconds()
            try endpoint.send(seq)
            let echoed = try endpoint.receive()
            let t1 = monotonicNanoseconds()
            guard echoed == seq else { throw BenchFailure("sent \(seq), got \(echoed) back") }
            _ = histogram.record((t1 - t0) / 2)
            seq += 1
            rounds += 1
            if t1 >= end && rounds >= 100 { break }
        }
        try endpoint.send(.max) // stop
    }

    func render(_ rows: [Row], floor: Row?) {
        StandardStreams.printLine("One-way latency (round trip / 2) between two processes pinned to CPUs \(options.cpus).")
        StandardStreams.printLine("Zero-copy ring rows claim the payload in place and commit it without rewriting it each round")
        StandardStreams.printLine("(an 8-byte sequence number is written), as the iceoryx2 benchmarks do; all other rows copy the payload.\n")
        var table = Table("MECHANISM", "PAYLOAD", "MIN", "P50", "P99", "P99.9", "P50 ÷ FLOOR", "P50 ÷ UNIX")
        table.rightAligned = [1, 2, 3, 4, 5, 6, 7]
        for row in rows {
            if row.samples == 0 {
                table.add(row.label, ByteCount.format(row.payloadBytes), "-", "-", "-", "-", "-", row.note ?? "n/a")
                continue
            }
            table.add(row.label, ByteCount.format(row.payloadBytes), formatNanoseconds(Double(row.minNs)),
                      formatNanoseconds(Double(row.p50Ns)), formatNanoseconds(Double(row.p99Ns)),
                      formatNanoseconds(Double(row.p999Ns)), row.ratioToFloor.map(formatRatio) ?? "-",
                      row.ratioToUnixSocket.map(formatRatio) ?? "-")
        }
        StandardStreams.printLine(table.render())
        StandardStreams.printLine("\n" + LatencyTargets(rows: rows).report())
    }
}

/// Checks the issue's latency targets against one run's rows.
struct LatencyTargets {
    let rows: [LatencyBenchCommand.Row]

    func row(_ mechanism: BenchMechanism, _ size: Int) -> LatencyBenchCommand.Row? {
        rows.first { $0.mechanism == mechanism.rawValue && $0.payloadBytes == size && $0.samples > 0 }
    }

    func report() -> String {
        var lines = ["Targets (ratios within this run):"]
        func check(_ what: String, _ value: Double?, _ limit: Double) {
            guard let value else { lines.append("  ? \(what): not measured"); return }
            lines.append("  \(value <= limit ? "met " : "MISSED") \(what): \(formatRatio(value)) (target ≤ \(formatRatio(limit)))")
        }
        let floor = row(.floor, 8)
        if let floor, let spin = row(.ringSpin, 8) {
            check("busy-spin ring p50 ÷ floor p50 (8 B)", Double(spin.p50Ns) / Double(floor.p50Ns), 1.25)
            check("busy-spin ring p99 ÷ floor p99 (8 B)", Double(spin.p99Ns) / Double(floor.p99Ns), 1.5)
        }
        if let spin = row(.ringSpin, 8), let standard = row(.ringDefault, 8) {
            check("spin-then-park p50 ÷ busy-spin p50 (8 B)", Double(standard.p50Ns) / Double(spin.p50Ns), 1.5)
        }
        let sizes = rows.filter { $0.mechanism == BenchMechanism.ringSpin.rawValue }.map(\.payloadBytes)
        if let small = row(.ringSpin, 8), let largest = sizes.max(), let large = row(.ringSpin, largest), largest > 8 {
            check("zero-copy p50 at \(ByteCount.format(largest)) ÷ at 8 B (flat)", Double(large.p50Ns) / Double(small.p50Ns), 1.2)
        }
        if let block = row(.ringBlock, 8), let futex = row(.futex, 8) {
            check("blocking ring p50 ÷ raw futex ping-pong p50 (8 B)", Double(block.p50Ns) / Double(futex.p50Ns), 1.1)
        }
        return lines.joined(separator: "\n")
    }
}

func parseSizes(_ text: String) throws -> [Int] {
    try text.split(separator: ",").map { part in
        try Size.parse(String(part)).bytes
    }
}

func parseMechanisms(_ text: String) throws -> [BenchMechanism] {
    try text.split(separator: ",").map { part in
        guard let mechanism = BenchMechanism(rawValue: String(part)) else {
            throw ValidationError("unknown mechanism '\(part)'; choose from \(BenchMechanism.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return mechanism
    }
}
