import ArgumentParser
import Shm
#if canImport(Glibc)
import Glibc
#endif

/// `shm bench throughput`: one process streams messages to another as fast
/// as the mechanism takes them; messages/s and bytes/s, against pipe, Unix
/// socket and the memcpy ceiling measured in the same run.
struct ThroughputBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "throughput",
        abstract: "Messages/s and GB/s of our ring (copy and zero-copy) against pipe, Unix socket and memcpy.",
        discussion: """
            Zero-copy: the producer claims each message in the ring, writes only its 8-byte sequence number \
            and commits; the consumer reads it in place. Copy: the producer copies the whole payload in from a \
            private buffer, the consumer copies it out into another. memcpy ceiling: one thread copying the same \
            payload size from a source that cycles through as much memory as the ring has, into a hot buffer. \
            Stream floor: the bytes the zero-copy ring moves per message (its record size, same data area) with \
            no per-record protocol — one index publication per --batch, as fast as two cores stream lines.
            """)

    @OptionGroup var options: BenchOptions
    @Option(help: "Payload sizes.", transform: parseSizes) var sizes: [Int] = [64, 4096, 65536, 1 << 20]
    @Option(help: "Bytes to move per cell (capped by --max-messages).", transform: Size.parse) var bytes = Size(bytes: 1 << 30)
    @Option(name: .customLong("max-messages"), help: "Messages per cell at most.") var maxMessages = 1_000_000
    @Option(name: .customLong("ring-capacity"), help: "Ring data bytes (default: 1 MiB, or 4 messages for large payloads).",
            transform: Size.parse)
    var ringCapacity: Size?
    @Option(help: "Mechanisms (comma-separated): ring-zero-copy, stream-floor, ring-copy, pipe, unix, memcpy; default all.",
            transform: { text in
                try text.split(separator: ",").map { part in
                    guard let m = Mechanism(rawValue: String(part)) else { throw ValidationError("unknown mechanism '\(part)'") }
                    return m
                }
            })
    var mechanisms: [Mechanism] = Mechanism.allCases
    @Option(help: "Rounds over all cells; figures are medians over rounds, ratios are medians of per-round ratios.")
    var `repeat` = 3
    @Option(help: "Ring producers publish this many messages per batch (`publishBatch`; 1: each on its own).")
    var batch = 1

    enum Mechanism: String, CaseIterable, Sendable {
        case ringZeroCopy = "ring-zero-copy", streamFloor = "stream-floor", ringCopy = "ring-copy", pipe, unix, memcpy

        var label: String {
            switch self {
            case .ringZeroCopy: "ring zero-copy"
            case .streamFloor: "stream floor (ring's bytes, no protocol)"
            case .ringCopy: "ring copy"
            case .pipe: "pipe"
            case .unix: "Unix domain socket"
            case .memcpy: "memcpy ceiling (one thread)"
            }
        }

        var latencyMechanism: BenchMechanism? {
            switch self {
            case .ringZeroCopy: .ringSpin
            case .streamFloor: .streamFloor
            case .ringCopy: .ringCopy
            case .pipe: .pipe
            case .unix: .unix
            case .memcpy: nil
            }
        }
    }

    struct Row: Encodable {
        let mechanism: String
        let label: String
        let payloadBytes: Int
        let messages: Int
        let seconds: Double
        var msgsPerS: Double
        var bytesPerS: Double
        var note: String?
        /// msgs/s in each round.
        var roundMsgsPerS: [Double] = []
        /// Medians over rounds of this cell ÷ the baseline in the same round.
        var ratioToPipe: Double?
        var ratioToUnixSocket: Double?
        var ratioToMemcpy: Double?
        var ratioToStreamFloor: Double?

        enum CodingKeys: String, CodingKey {
            case mechanism, label, messages, seconds, note
            case payloadBytes = "payload_bytes", msgsPerS = "msgs_per_s", bytesPerS = "bytes_per_s"
            case roundMsgsPerS = "round_msgs_per_s", ratioToPipe = "ratio_to_pipe"
            case ratioToUnixSocket = "ratio_to_unix_socket", ratioToMemcpy = "ratio_to_memcpy"
            case ratioToStreamFloor = "ratio_to_stream_floor"
        }
    }

    func run() throws {
        warnIfDebugBuild()
        let childCPU = try options.pinParent()
        guard `repeat` >= 1 else { throw ValidationError("--repeat must be positive") }
        let cells = sizes.flatMap { size in mechanisms.map { ($0, size) } }
        var progress = Progress(enabled: !options.json, total: cells.count * `repeat`)
        var rounds: [[Row]] = []
        for round in 1...`repeat` {
            var rows: [Row] = []
            for (mechanism, size) in cells {
                progress.step("round \(round)/\(`repeat`): \(mechanism.label), \(ByteCount.format(size))")
                let count = max(100, min(maxMessages, bytes.bytes / max(size, 1)))
                do {
                    rows.append(try measure(mechanism, size: size, count: count, childCPU: childCPU))
                } catch {
                    rows.append(Row(mechanism: mechanism.rawValue, label: mechanism.label, payloadBytes: size, messages: 0,
                                    seconds: 0, msgsPerS: 0, bytesPerS: 0, note: "n/a: \(error)"))
                }
            }
            rounds.append(rows)
        }
        progress.clear()
        let rows = Self.combine(rounds)
        if options.json {
            for row in rows { try printJSONLine(row) }
            return
        }
        render(rows)
    }

    /// Medians over rounds, and per-round ratios to the baselines.
    static func combine(_ rounds: [[Row]]) -> [Row] {
        guard var rows = rounds.first else { return [] }
        func ratio(_ row: Row, to baseline: Mechanism, in round: [Row]) -> Double? {
            guard row.msgsPerS > 0,
                  let base = round.first(where: { $0.mechanism == baseline.rawValue && $0.payloadBytes == row.payloadBytes }),
                  base.msgsPerS > 0 else { return nil }
            return row.msgsPerS / base.msgsPerS
        }
        for i in rows.indices {
            let series = rounds.map { $0[i] }
            let rates = series.map(\.msgsPerS).filter { $0 > 0 }
            rows[i].roundMsgsPerS = series.map(\.msgsPerS)
            guard let rate = median(rates) else { continue }
            rows[i].msgsPerS = rate
            rows[i].bytesPerS = rate * Double(rows[i].payloadBytes)
            rows[i].note = nil
            rows[i].ratioToPipe = median(zip(series, rounds).compactMap { ratio($0.0, to: .pipe, in: $0.1) })
            rows[i].ratioToUnixSocket = median(zip(series, rounds).compactMap { ratio($0.0, to: .unix, in: $0.1) })
            rows[i].ratioToMemcpy = median(zip(series, rounds).compactMap { ratio($0.0, to: .memcpy, in: $0.1) })
            rows[i].ratioToStreamFloor = median(zip(series, rounds).compactMap { ratio($0.0, to: .streamFloor, in: $0.1) })
        }
        return rows
    }

    static func ringCapacity(for size: Int) -> Int {
        var power = 1
        while power < size + 16 { power <<= 1 }
        return max(1 << 20, 4 * power)
    }

    func measure(_ mechanism: Mechanism, size: Int, count: Int, childCPU: Int?) throws -> Row {
        guard let latencyMechanism = mechanism.latencyMechanism else { return memcpyCeiling(size: size, count: count) }
        var capacity = Self.ringCapacity(for: size)
        if let requested = ringCapacity?.bytes {
            capacity = 4096
            while capacity < requested || MessageRing.maximumMessageSize(capacity: capacity) < size { capacity <<= 1 }
        }
        let session = try BenchSetup.parent(latencyMechanism, size: size, ringCapacity: capacity)
        let child = try spawnBenchPeer(session, role: "produce", childCPU: childCPU,
                                       extra: ["--count", String(count), "--batch", String(max(1, batch))])
        let elapsed: UInt64
        do {
            elapsed = try consume(session.endpoint, count: count)
        } catch {
            child.kill()
            _ = try? child.wait(timeout: .seconds(5))
            throw BenchFailure("\(error); peer: \(child.errorText)")
        }
        try finish(child)
        let seconds = Double(elapsed) / 1e9
        let rate = Double(count - 1) / seconds
        return Row(mechanism: mechanism.rawValue, label: mechanism.label, payloadBytes: size, messages: count,
                   seconds: seconds, msgsPerS: rate, bytesPerS: rate * Double(size), note: nil)
    }

    /// Receives `count` messages, checking that none is lost or reordered;
    /// returns nanoseconds from the first to the last.
    func consume(_ endpoint: some BenchEndpoint, count: Int) throws -> UInt64 {
        if let ring = endpoint as? RingEndpoint { return try ring.drainCount(count) }
        if let stream = endpoint as? StreamFloorEndpoint { return try stream.drainCount(count) }
        guard try endpoint.receive() == 0 else { throw BenchFailure("first message out of order") }
        let start = monotonicNanoseconds()
        for expected in 1..<UInt64(count) {
            let seq = try endpoint.receive()
            guard seq == expected else { throw BenchFailure("expected message \(expected), got \(seq)") }
        }
        let end = monotonicNanoseconds()
        try endpoint.send(.max) // acknowledgement: the producer may exit
        return end - start
    }

    func memcpyCeiling(size: Int, count: Int) -> Row {
        let footprint = Self.ringCapacity(for: size)
        let source = UnsafeMutableRawBufferPointer.allocate(byteCount: footprint, alignment: 64)
        let destination = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 64)
        defer { source.deallocate(); destination.deallocate() }
        source.initializeMemory(as: UInt8.self, repeating: 1)
        destination.initializeMemory(as: UInt8.self, repeating: 2)
        let slots = max(1, footprint / size)
        var checksum: UInt8 = 0
        let start = monotonicNanoseconds()
        for i in 0..<count {
            destination.baseAddress!.copyMemory(from: source.baseAddress! + (i % slots) * size, byteCount: size)
            checksum &+= destination[i % size]
        }
        let seconds = Double(monotonicNanoseconds() - start) / 1e9
        blackHole(checksum) // keep the copies from being optimized away
        let rate = Double(count) / seconds
        return Row(mechanism: Mechanism.memcpy.rawValue, label: Mechanism.memcpy.label, payloadBytes: size, messages: count,
                   seconds: seconds, msgsPerS: rate, bytesPerS: rate * Double(size), note: nil)
    }

    func render(_ rows: [Row]) {
        StandardStreams.printLine("Streaming throughput between two processes pinned to CPUs \(options.cpus), \(`repeat`) rounds (medians).")
        StandardStreams.printLine("Zero-copy: claim in place, write the 8-byte sequence number, commit; read in place. Copy: whole payload in and out.\n")
        var table = Table("MECHANISM", "PAYLOAD", "MESSAGES", "MSGS/S", "GB/S", "÷ PIPE", "÷ UNIX", "÷ MEMCPY", "MSGS/S PER ROUND")
        table.rightAligned = [1, 2, 3, 4, 5, 6, 7]
        for row in rows {
            if row.msgsPerS == 0 {
                table.add(row.label, ByteCount.format(row.payloadBytes), "-", "-", "-", "-", "-", "-", row.note ?? "n/a")
                continue
            }
            table.add(row.label, ByteCount.format(row.payloadBytes), String(row.messages), formatRate(row.msgsPerS),
                      String(format2: row.bytesPerS / 1e9), row.ratioToPipe.map(formatRatio) ?? "-",
                      row.ratioToUnixSocket.map(formatRatio) ?? "-", row.ratioToMemcpy.map(formatRatio) ?? "-",
                      row.roundMsgsPerS.map(formatRate).joined(separator: " "))
        }
        StandardStreams.printLine(table.render())
        var lines = ["\nTargets (ratios within this run):"]
        func find(_ m: Mechanism, _ size: Int) -> Row? { rows.first { $0.mechanism == m.rawValue && $0.payloadBytes == size && $0.msgsPerS > 0 } }
        if let r = find(.ringZeroCopy, 64)?.ratioToPipe {
            lines.append("  \(r >= 60 ? "met " : "MISSED") zero-copy 64 B msgs/s ÷ pipe: \(formatRatio(r)) (target ≥ 60x; ≥ 30x in round 1)")
            if let floor = find(.streamFloor, 64)?.ratioToPipe {
                lines.append("         the stream floor (the same bytes, no protocol) ÷ pipe: \(formatRatio(floor)): "
                             + "no ring with 80-byte records can pass it here")
            }
        }
        if let r = find(.ringZeroCopy, 64)?.ratioToStreamFloor {
            lines.append("  info   zero-copy 64 B msgs/s ÷ the stream floor: \(formatRatio(r))")
        }
        if let r = find(.ringZeroCopy, 64)?.ratioToUnixSocket {
            lines.append("  \(r >= 100 ? "met " : "MISSED") zero-copy 64 B msgs/s ÷ Unix socket: \(formatRatio(r)) (target ≥ 100x)")
        }
        if let r = find(.ringCopy, 4096)?.ratioToMemcpy {
            lines.append("  \(r >= 0.6 ? "met " : "MISSED") copy-mode 4 KiB GB/s ÷ memcpy ceiling: \(formatRatio(r)) (target ≥ 0.60x)")
        }
        StandardStreams.printLine(lines.joined(separator: "\n"))
    }
}

func formatRate(_ value: Double) -> String {
    if value >= 1e6 { return "\(String(format2: value / 1e6)) M" }
    if value >= 1e3 { return "\(String(format2: value / 1e3)) k" }
    return String(format2: value)
}

extension String {
    /// `value` with two decimals.
    init(format2 value: Double) {
        let hundredths = Int((value * 100).rounded())
        let fraction = abs(hundredths % 100)
        self = "\(hundredths / 100).\(fraction < 10 ? "0" : "")\(fraction)"
    }
}

@inline(never)
func blackHole<T>(_ value: T) { withExtendedLifetime(value) {} }
