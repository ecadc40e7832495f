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
    var mechanisms: [BenchMechanism] = BenchMechanism.latencyDefaults
    @Option(help: "Measuring time per cell and round, seconds.") var duration: Double = 0.2
    @Option(name: .customLong("max-rounds"), help: "Round trips per cell and round at most.") var maxRounds = 200_000
    @Option(help: "Rounds over all cells; ratios are medians over rounds.") var `repeat` = 3

    struct Row: Encodable {
        let mechanism: String
        let label: String
        let payloadBytes: Int
        let samples: UInt64
        let minNs: UInt64, p50Ns: UInt64, p99Ns: UInt64, p999Ns: UInt64, maxNs: UInt64
        /// Median over rounds of (this cell's p50 ÷ the floor's p50 measured just before it).
        var ratioToFloor: Double?
        /// The same for p99.
        var p99RatioToFloor: Double?
        var ratioToUnixSocket: Double?
        /// This cell's p50 in each round.
        var roundP50Ns: [UInt64]
        let note: String?

        enum CodingKeys: String, CodingKey {
            case mechanism, label, samples, note
            case payloadBytes = "payload_bytes", minNs = "min_ns", p50Ns = "p50_ns", p99Ns = "p99_ns"
            case p999Ns = "p999_ns", maxNs = "max_ns", ratioToFloor = "ratio_to_floor"
            case p99RatioToFloor = "p99_ratio_to_floor", ratioToUnixSocket = "ratio_to_unix_socket"
            case roundP50Ns = "round_p50_ns"
        }
    }

    /// One cell's measurements across rounds.
    struct Cell {
        let mechanism: BenchMechanism
        let size: Int
        var histogram = latencyHistogram()
        var roundP50: [UInt64] = []
        var p50Ratios: [Double] = []
        var p99Ratios: [Double] = []
        var failure: String?
    }

    func run() throws {
        warnIfDebugBuild()
        guard `repeat` >= 1, duration > 0 else { throw ValidationError("--repeat and --duration must be positive") }
        let childCPU = try options.pinParent()
        var cells: [Cell] = []
        for mechanism in mechanisms {
            for size in mechanism.payloadless ? [8] : sizes { cells.append(Cell(mechanism: mechanism, size: size)) }
        }
        var floor = Cell(mechanism: .floor, size: 8)
        let measured = cells.filter { $0.mechanism != .floor }.count
        var progress = Progress(enabled: !options.json, total: `repeat` * measured * 2)
        for round in 1...`repeat` {
            for index in cells.indices where cells[index].mechanism != .floor {
                // The floor is measured right before every cell, so a change in
                // how the host places the two vCPUs hits both sides of a ratio.
                progress.step("round \(round)/\(`repeat`): floor")
                guard let floorRound = try? measure(.floor, size: 8, childCPU: childCPU) else { continue }
                floor.histogram.add(floorRound)
                floor.roundP50.append(floorRound.valueAtPercentile(50))
                progress.step("round \(round)/\(`repeat`): \(cells[index].mechanism.label), \(ByteCount.format(cells[index].size))")
                do {
                    let result = try measure(cells[index].mechanism, size: cells[index].size, childCPU: childCPU)
                    cells[index].histogram.add(result)
                    cells[index].roundP50.append(result.valueAtPercentile(50))
                    cells[index].p50Ratios.append(Double(result.valueAtPercentile(50)) / Double(max(1, floorRound.valueAtPercentile(50))))
                    cells[index].p99Ratios.append(Double(result.valueAtPercentile(99)) / Double(max(1, floorRound.valueAtPercentile(99))))
                } catch {
                    cells[index].failure = "n/a: \(error)"
                }
            }
        }
        progress.clear()
        floor.p50Ratios = [1]
        floor.p99Ratios = [1]
        var rows = ([floor] + cells.filter { $0.mechanism != .floor }).map(makeRow)
        for i in rows.indices where rows[i].samples > 0 {
            if let unix = rows.first(where: { $0.mechanism == "unix" && $0.payloadBytes == rows[i].payloadBytes && $0.samples > 0 }) {
                rows[i].ratioToUnixSocket = Double(rows[i].p50Ns) / Double(max(1, unix.p50Ns))
            }
        }
        if options.json {
            for row in rows { try printJSONLine(row) }
            return
        }
        render(rows)
    }

    func makeRow(_ cell: Cell) -> Row {
        let h = cell.histogram
        guard h.totalCount > 0 else {
            return Row(mechanism: cell.mechanism.rawValue, label: cell.mechanism.label, payloadBytes: cell.size, samples: 0,
                       minNs: 0, p50Ns: 0, p99Ns: 0, p999Ns: 0, maxNs: 0, roundP50Ns: [], note: cell.failure ?? "n/a")
        }
        return Row(mechanism: cell.mechanism.rawValue, label: cell.mechanism.label, payloadBytes: cell.size,
                   samples: h.totalCount, minNs: h.min, p50Ns: h.valueAtPercentile(50), p99Ns: h.valueAtPercentile(99),
                   p999Ns: h.valueAtPercentile(99.9), maxNs: h.max, ratioToFloor: median(cell.p50Ratios),
                   p99RatioToFloor: median(cell.p99Ratios), ratioToUnixSocket: nil, roundP50Ns: cell.roundP50, note: cell.failure)
    }

    /// One measurement of one cell: a fresh channel and peer process.
    func measure(_ mechanism: BenchMechanism, size: Int, childCPU: Int?) throws -> Histogram<UInt64> {
        try PingPong(duration: duration, maxRounds: maxRounds).measure(BenchSetup.parent(mechanism, size: size), childCPU: childCPU)
    }

    func render(_ rows: [Row]) {
        StandardStreams.printLine("One-way latency (round trip / 2) between two processes pinned to CPUs \(options.cpus), \(`repeat`) rounds.")
        StandardStreams.printLine("Zero-copy ring rows claim the payload in place and commit it without rewriting it each round")
        StandardStreams.printLine("(an 8-byte sequence number is written), as the iceoryx2 benchmarks do; all other rows copy the payload.")
        StandardStreams.printLine("÷ FLOOR is the median over rounds of the cell's p50 over the floor's p50 measured just before it.\n")
        var table = Table("MECHANISM", "PAYLOAD", "MIN", "P50", "P99", "P99.9", "P50 ÷ FLOOR", "P50 ÷ UNIX", "P50 PER ROUND")
        table.rightAligned = [1, 2, 3, 4, 5, 6, 7]
        for row in rows {
            if row.samples == 0 {
                table.add(row.label, ByteCount.format(row.payloadBytes), "-", "-", "-", "-", "-", "-", row.note ?? "n/a")
                continue
            }
            table.add(row.label, ByteCount.format(row.payloadBytes), formatNanoseconds(Double(row.minNs)),
                      formatNanoseconds(Double(row.p50Ns)), formatNanoseconds(Double(row.p99Ns)),
                      formatNanoseconds(Double(row.p999Ns)), row.ratioToFloor.map(formatRatio) ?? "-",
                      row.ratioToUnixSocket.map(formatRatio) ?? "-",
                      row.mechanism == BenchMechanism.floor.rawValue
                          ? "\(row.roundP50Ns.count) runs, one before each cell"
                          : row.roundP50Ns.map { formatNanoseconds(Double($0)) }.joined(separator: " "))
        }
        StandardStreams.printLine(table.render())
        StandardStreams.printLine("\n" + LatencyTargets(rows: rows).report())
    }
}

func median(_ values: [Double]) -> Double? {
    guard !values.isEmpty else { return nil }
    let sorted = values.sorted()
    return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
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
        if let spin = row(.ringSpin, 8) {
            check("busy-spin ring p50 ÷ floor p50 (8 B)", spin.ratioToFloor, 1.25)
            check("busy-spin ring p99 ÷ floor p99 (8 B)", spin.p99RatioToFloor, 1.5)
        }
        // Cells measured at different moments are compared through their
        // floor-normalized ratios, so host placement changes cancel out.
        func normalized(_ a: LatencyBenchCommand.Row?, _ b: LatencyBenchCommand.Row?) -> Double? {
            guard let x = a?.ratioToFloor, let y = b?.ratioToFloor, y > 0 else { return nil }
            return x / y
        }
        if row(.ringDefault, 8) != nil {
            check("spin-then-park p50 ÷ busy-spin p50 (8 B)", normalized(row(.ringDefault, 8), row(.ringSpin, 8)), 1.5)
        }
        let sizes = rows.filter { $0.mechanism == BenchMechanism.ringSpin.rawValue && $0.samples > 0 }.map(\.payloadBytes)
        if let largest = sizes.max(), largest > 8 {
            check("zero-copy p50 at \(ByteCount.format(largest)) ÷ at 8 B (flat)", normalized(row(.ringSpin, largest), row(.ringSpin, 8)), 1.2)
        }
        if row(.ringBlock, 8) != nil {
            check("blocking ring p50 ÷ raw futex ping-pong p50 (8 B)", normalized(row(.ringBlock, 8), row(.futex, 8)), 1.1)
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
