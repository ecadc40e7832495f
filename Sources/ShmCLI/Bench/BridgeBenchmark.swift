#if canImport(ShmBridge)
#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Shm
import ShmBridge
import Synchronization

/// One row of `shm bench bridge`.
struct BridgeBenchRow: Encodable {
    let mechanism: String
    let bytes: Int
    let p50Ns: UInt64, p99Ns: UInt64
    let messagesPerSecond: Double
    let received: Int, sent: Int
    enum CodingKeys: String, CodingKey {
        case mechanism, bytes, p50Ns = "p50_ns", p99Ns = "p99_ns", messagesPerSecond = "messages_per_second", received, sent
    }
}

/// `shm bench bridge`: the bridge (shared memory → NATS → shared memory)
/// against NATS alone and the local shared-memory path, in one run.
struct BridgeBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bridge",
        abstract: "Latency and messages/s across the NATS bridge vs NATS alone vs local shared memory.",
        discussion: """
            Everything runs in this process against one nats-server (started here on a loopback port when \
            --url is not given). Bridge: publisher → bridge X → NATS → bridge Y → subscriber, and back the \
            same way for the answer (two Bridge instances; Y imports under the prefix "y.", X under "x.", \
            so one /dev/shm serves as both machines). NATS alone: the same payloads between two connections \
            of the C client, split at the server's max_payload as the bridge splits them. Local: the same \
            ping-pong through two shared-memory services, no NATS. One-way: from the send call until the receiver \
            holds the whole payload (the send time travels in it: one clock, one process), each round paced \
            by a 16-byte answer; messages/s: a \
            stream of --messages one way, counted at the receiver (what NATS dropped shows as received < sent).
            """)

    @Option(help: "NATS server URL (default: start nats-server on a free loopback port).") var url: String?
    @Option(help: "Payload sizes.", transform: parseSizes) var sizes: [Int] = [64, 4096, 65536, 1 << 20, 6_220_800]
    @Option(help: "Ping-pong rounds per size (fewer above 64 KiB).") var rounds = 2000
    @Option(help: "Messages streamed per size (fewer above 64 KiB).") var messages = 20000
    @Flag(name: .customLong("send-immediately"), help: "Both NATS rows write each message at once (natsOptions_SetSendAsap).")
    var sendImmediately = false
    @Flag(inversion: .prefixedNo, help: "The bridges batch samples waiting together (BridgeConfiguration.batching, on by default).")
    var batch = true
    @Option(name: .customLong("export-wait"), help: "How both bridges' export threads wait: park (default), yield, spin.")
    var exportWait = BridgeWait.park
    @Option(help: "Rounds per size (each runs all three rows); with more than one, medians are printed too.")
    var repeats = 1
    @Flag(help: "One JSON object per row.") var json = false

    func run() throws {
        warnIfDebugBuild()
        var server: ChildProcess?
        let target: String
        if let url {
            target = url
        } else {
            let candidates: [String] = ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"]
            guard let binary = candidates.first(where: { path in access(path, X_OK) == 0 }) else { throw CommandFailure("no nats-server found: install it (apt-get install nats-server) or pass --url") }
            let port = Int.random(in: 20000...60000)
            server = try ChildProcess.spawn(binary, arguments: ["-a", "127.0.0.1", "-p", String(port)], captureOutput: true)
            target = "nats://127.0.0.1:\(port)"
            usleep(300_000)
        }
        defer {
            server?.kill(SIGTERM)
            _ = try? server?.wait(timeout: .seconds(10))
        }
        let id = String(UInt32.random(in: 0...UInt32.max), radix: 16)
        guard repeats >= 1 else { throw ValidationError("--repeats is at least 1") }
        for size in sizes {
            guard size >= 16, size <= 64 << 20 else { throw ValidationError("sizes from 16 B to 64 MiB") }
            let scale = size > 65536 ? max(1, size / 65536) : 1
            let pings = max(20, rounds / scale), stream = max(50, messages / scale)
            var rounds: [[BridgeBenchRow]] = []
            for round in 0..<repeats {
                let tag = "\(id).\(size).\(round)"
                let local = try reporting { try localRow(tag: tag, size: size, pings: pings, stream: stream) }
                let nats = try reporting { try natsRow(url: target, tag: tag, size: size, pings: pings, stream: stream) }
                let bridge = try reporting { try bridgeRow(url: target, tag: tag, size: size, pings: pings, stream: stream) }
                for row in [local, nats, bridge] { print(row, against: nats) }
                rounds.append([local, nats, bridge])
            }
            guard repeats > 1, !json else { continue }
            // Medians over the rounds, then their ratios (this VM is noisy: one round proves little).
            let medians = (0..<3).map { column in Self.median(rounds.map { $0[column] }) }
            StandardStreams.printLine("median of \(repeats) rounds:")
            for row in medians { print(row, against: medians[1]) }
        }
    }

    /// A row of the median p50, p99 and rate of `rows` (one mechanism and size).
    static func median(_ rows: [BridgeBenchRow]) -> BridgeBenchRow {
        func middle<T: Comparable>(_ values: [T]) -> T { values.sorted()[values.count / 2] }
        return BridgeBenchRow(mechanism: rows[0].mechanism, bytes: rows[0].bytes, p50Ns: middle(rows.map(\.p50Ns)),
                              p99Ns: middle(rows.map(\.p99Ns)), messagesPerSecond: middle(rows.map(\.messagesPerSecond)),
                              received: rows.map(\.received).reduce(0, +), sent: rows.map(\.sent).reduce(0, +))
    }

    func print(_ row: BridgeBenchRow, against nats: BridgeBenchRow) {
        if json {
            try? printJSONLine(row)
            return
        }
        let ratio = row.mechanism == nats.mechanism ? "" :
            "  latency \(formatRatio(Double(row.p50Ns) / Double(max(1, nats.p50Ns)))) of NATS, "
            + "rate \(formatRatio(row.messagesPerSecond / max(1, nats.messagesPerSecond))) of NATS"
        StandardStreams.printLine("\(row.mechanism.padding(toLength: 22, withPad: " ", startingAt: 0)) \(String(row.bytes).leftPad(9)) B"
                                  + "  p50 \(formatNanoseconds(Double(row.p50Ns)).leftPad(9))  p99 \(formatNanoseconds(Double(row.p99Ns)).leftPad(9))"
                                  + "  \(String(Int(row.messagesPerSecond)).leftPad(8)) msg/s  \(row.received)/\(row.sent)" + ratio)
    }

    // MARK: Local shared memory

    func localRow(tag: String, size: Int, pings: Int, stream: Int) throws -> BridgeBenchRow {
        let node = try Node(name: "bench-bridge")
        let ping = try benchService(node, "bench.\(tag).lp", size), pong = try benchService(node, "bench.\(tag).lq", size)
        let (p50, p99) = try pingPong(node: node, out: ping, back: pong, echoIn: ping, echoOut: pong, size: size, rounds: pings)
        let (rate, received) = try streamRate(out: try benchService(node, "bench.\(tag).ls", size),
                                              into: try benchService(node, "bench.\(tag).ls", size), size: size, count: stream)
        return BridgeBenchRow(mechanism: "shared memory (local)", bytes: size, p50Ns: p50, p99Ns: p99, messagesPerSecond: rate,
                              received: received, sent: stream)
    }

    // MARK: Across the bridge

    func bridgeRow(url: String, tag: String, size: Int, pings: Int, stream: Int) throws -> BridgeBenchRow {
        let p = "bench.\(tag).p", q = "bench.\(tag).q", s = "bench.\(tag).s"
        let node = try Node(name: "bench-bridge")
        // Both "machines" in one /dev/shm: Y's imports are named y.<name>, X's x.<name>.
        let ping = try benchService(node, p, size), pongHere = try benchService(node, "x." + q, size)
        let pingThere = try benchService(node, "y." + p, size), pong = try benchService(node, q, size)
        let streamOut = try benchService(node, s, size), streamIn = try benchService(node, "y." + s, size)
        let x = try Bridge(BridgeConfiguration(url: url, exports: [p, s], imports: [q], name: "bench-x", importPrefix: "x.",
                                           sendImmediately: sendImmediately, batching: batch,
                                           exportWait: exportWait.strategy))
        let y = try Bridge(BridgeConfiguration(url: url, exports: [q], imports: [p, s], name: "bench-y", importPrefix: "y.",
                                           sendImmediately: sendImmediately, batching: batch,
                                           exportWait: exportWait.strategy))
        let runners = [x, y].map { bridge in
            let done = Done()
            BlockingPool.shared.submit {
                try? bridge.run()
                done.set()
            }
            return done
        }
        defer {
            x.stop()
            y.stop()
            for done in runners { done.wait() }
        }
        // The exporters attach within a second of the services existing.
        let attached = monotonicNanoseconds() + 10_000_000_000
        while [ping, pong, streamOut].contains(where: { !$0.ports.contains { $0.kind == "subscriber" } }), monotonicNanoseconds() < attached {
            usleep(10_000)
        }
        let (p50, p99) = try pingPong(node: node, out: ping, back: pongHere, echoIn: pingThere, echoOut: pong, size: size, rounds: pings)
        let (rate, received) = try streamRate(out: streamOut, into: streamIn, size: size, count: stream)
        return BridgeBenchRow(mechanism: "bridge (shm→NATS→shm)", bytes: size, p50Ns: p50, p99Ns: p99, messagesPerSecond: rate,
                              received: received, sent: stream)
    }

    // MARK: NATS alone

    func natsRow(url: String, tag: String, size: Int, pings: Int, stream: Int) throws -> BridgeBenchRow {
        let a = try NatsConnection(url: url, name: "bench-a", waitForServer: false, sendImmediately: sendImmediately)
        let b = try NatsConnection(url: url, name: "bench-b", waitForServer: false, sendImmediately: sendImmediately)
        let limit = max(64 << 10, a.maxPayload - 4096)
        let parts = (size + limit - 1) / limit
        let payload = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 16)
        defer { payload.deallocate() }
        for i in 0..<size { payload[i] = UInt8(truncatingIfNeeded: i) }
        // Subjects, header names and values made C strings once, as the bridge does.
        let templates = ["np", "ns"].map { NatsMessageTemplate(subject: "bench.\(tag).\($0)", headers: []) }
        let partKey = Array("Part".utf8CString)
        let partValues = (0..<parts).map { Array("\($0)/\(parts)".utf8CString) }
        func send(_ connection: NatsConnection, _ template: NatsMessageTemplate, _ seq: UInt64) throws {
            payload.storeBytes(of: seq, as: UInt64.self)
            for part in 0..<parts {
                let start = part * limit, end = min(size, start + limit)
                try connection.publish(template, adding: partKey, value: partValues[part],
                                       payload: UnsafeRawBufferPointer(rebasing: payload[start..<end]))
            }
        }
        let ping = try b.subscribe("bench.\(tag).np"), pong = try a.subscribe("bench.\(tag).nq")
        try a.flush()
        try b.flush()
        // The receiver takes every part of a message, notes the one-way time
        // (the send time travels in part 0), then answers with 16 bytes.
        let echo = Done(), stop = Done(), oneWay = OneWayTimes()
        let echoSide = UncheckedPair(b, ping)
        BlockingPool.shared.submit {
            var got = 0, sentAt: UInt64 = 0
            var answer = [UInt8](repeating: 0, count: 16)
            while !stop.isSet {
                guard let message = try? echoSide.second.next(timeout: .milliseconds(100)) else { continue }
                if got == 0 { sentAt = message.data.loadUnaligned(fromByteOffset: 8, as: UInt64.self) } // nats.c's payload: any alignment
                got += 1
                guard got == parts else { continue }
                got = 0
                oneWay.record(monotonicNanoseconds() &- sentAt)
                try? answer.withUnsafeBytes { try echoSide.first.publish("bench.\(tag).nq", payload: $0) }
                answer[0] &+= 1
            }
            echo.set()
        }
        defer {
            stop.set()
            echo.wait()
        }
        for round in 0..<(pings + pings / 10) {
            if round == pings / 10 { oneWay.reset() } // warm-up rounds not counted
            payload.storeBytes(of: monotonicNanoseconds(), toByteOffset: 8, as: UInt64.self)
            try send(a, templates[0], UInt64(round))
            guard try pong.next(timeout: .seconds(10)) != nil else { throw CommandFailure("NATS receiver silent") }
        }
        let summary = Summary(oneWay.times)
        // Stream: count whole messages (all parts) at the receiver.
        let sink = try b.subscribe("bench.\(tag).ns")
        try sink.setPendingLimits(messages: -1, bytes: -1)
        try b.flush()
        let start = monotonicNanoseconds()
        let receiver = Counted()
        let receiverSide = UncheckedPair(sink, parts)
        BlockingPool.shared.submit {
            var partsSeen = 0
            while let message = try? receiverSide.first.next(timeout: .seconds(2)) {
                _ = message
                partsSeen += 1
                if partsSeen % receiverSide.second == 0 { receiver.increment(at: monotonicNanoseconds()) }
                if partsSeen == stream * receiverSide.second { break }
            }
            receiver.finish()
        }
        for seq in 0..<stream { try send(a, templates[1], UInt64(seq)) }
        try a.flush(timeout: .seconds(60))
        receiver.waitFinished()
        let (count, last) = receiver.value
        let rate = Double(count) / (Double(max(1, last &- start)) / 1e9)
        return BridgeBenchRow(mechanism: "NATS alone (C client)", bytes: size, p50Ns: summary.p50, p99Ns: summary.p99,
                              messagesPerSecond: rate, received: count, sent: stream)
    }

    // MARK: Shared parts

    func benchService(_ node: Node, _ name: String, _ size: Int) throws -> PublishSubscribeService<UInt8> {
        try node.publishSubscribe(name, slicesOf: UInt8.self, maxLength: size,
                                  config: .init(maxPublishers: 2, maxSubscribers: 4, subscriberBufferSize: 64, historySize: 0,
                                                maxLoans: 2, maxBorrowed: 2, overflow: .block))
    }

    /// One-way times `out` → `echoIn` (the send time travels in the
    /// sample; one clock, one process), paced by a 16-byte answer
    /// `echoOut` → `back` before the next round.
    func pingPong(node: Node, out: PublishSubscribeService<UInt8>, back: PublishSubscribeService<UInt8>,
                  echoIn: PublishSubscribeService<UInt8>, echoOut: PublishSubscribeService<UInt8>,
                  size: Int, rounds: Int) throws -> (UInt64, UInt64) {
        let publisher = try out.publisher(), subscriber = try back.subscriber()
        let echoSubscriber = try echoIn.subscriber(), echoPublisher = try echoOut.publisher()
        let stop = Done(), finished = Done(), oneWay = OneWayTimes()
        let echo = UncheckedPair(echoSubscriber, echoPublisher)
        BlockingPool.shared.submit {
            while !stop.isSet {
                guard let sample = try? echo.first.receive(timeout: .milliseconds(100)) else { continue }
                oneWay.record(monotonicNanoseconds() &- sample.unsafeBytes.load(fromByteOffset: 8, as: UInt64.self))
                let seq = sample.unsafeBytes.load(as: UInt64.self)
                guard let reply = try? echo.second.loanUninitialized(count: 16) else { continue }
                UnsafeMutableRawPointer(reply.unsafeBuffer.baseAddress!).storeBytes(of: seq, as: UInt64.self)
                _ = try? reply.assumeInitialized().send()
            }
            finished.set()
        }
        defer {
            stop.set()
            finished.wait()
        }
        let warmup = rounds / 10
        for round in 0..<(rounds + warmup) {
            if round == warmup { oneWay.reset() }
            let loan = try publisher.loanUninitialized(count: size)
            let bytes = UnsafeMutableRawPointer(loan.unsafeBuffer.baseAddress!)
            bytes.storeBytes(of: UInt64(round), as: UInt64.self)
            bytes.storeBytes(of: monotonicNanoseconds(), toByteOffset: 8, as: UInt64.self)
            _ = try loan.assumeInitialized().send()
            while true {
                let sample = try subscriber.receive(timeout: .seconds(10))
                if sample.unsafeBytes.load(as: UInt64.self) == UInt64(round) { break }
            }
        }
        let summary = Summary(oneWay.times)
        return (summary.p50, summary.p99)
    }

    /// `count` samples published on `out` as fast as `block` allows, counted as they reach `into`.
    func streamRate(out: PublishSubscribeService<UInt8>, into: PublishSubscribeService<UInt8>, size: Int,
                    count: Int) throws -> (Double, Int) {
        let subscriber = try into.subscriber(), publisher = try out.publisher()
        publisher.sendTimeout = .seconds(10)
        let receiver = Counted()
        let side = UncheckedPair(subscriber, count)
        BlockingPool.shared.submit {
            while let _ = try? side.first.receive(timeout: .seconds(3)) {
                receiver.increment(at: monotonicNanoseconds())
                if receiver.value.0 == side.second { break }
            }
            receiver.finish()
        }
        usleep(1_500_000) // a bridge's exporter finds the new subscriber's service within a second
        let start = monotonicNanoseconds()
        for seq in 0..<count {
            let loan = try publisher.loanUninitialized(count: size)
            UnsafeMutableRawPointer(loan.unsafeBuffer.baseAddress!).storeBytes(of: UInt64(seq), as: UInt64.self)
            _ = try loan.assumeInitialized().send()
        }
        receiver.waitFinished()
        let (received, last) = receiver.value
        return (Double(received) / (Double(max(1, last &- start)) / 1e9), received)
    }
}

/// Two non-Sendable values handed to a helper thread that alone uses them.
struct UncheckedPair<A, B>: @unchecked Sendable {
    let first: A, second: B
    init(_ first: A, _ second: B) {
        self.first = first
        self.second = second
    }
}

/// A one-way flag a thread sets and another waits for.
final class Done: @unchecked Sendable {
    private let flag = Mutex(false)
    func set() { flag.withLock { $0 = true } }
    var isSet: Bool { flag.withLock { $0 } }
    func wait() { while !isSet { usleep(1000) } }
}

/// One-way times noted by a receiving thread.
final class OneWayTimes: @unchecked Sendable {
    private let state = Mutex([UInt64]())
    func record(_ nanoseconds: UInt64) { state.withLock { $0.append(nanoseconds) } }
    func reset() { state.withLock { $0.removeAll(keepingCapacity: true) } }
    var times: [UInt64] { state.withLock { $0 } }
}

/// Messages counted by a receiver thread, and when the last one came.
final class Counted: @unchecked Sendable {
    private let state = Mutex((count: 0, last: UInt64(0), finished: false))
    func increment(at time: UInt64) { state.withLock { $0.count += 1; $0.last = time } }
    func finish() { state.withLock { $0.finished = true } }
    var value: (Int, UInt64) { state.withLock { ($0.count, $0.last) } }
    func waitFinished() { while !state.withLock({ $0.finished }) { usleep(1000) } }
}

extension String {
    func leftPad(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}
#else
import ArgumentParser

struct BridgeBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bridge", abstract: "The NATS bridge (not in this build).")
    func run() throws { throw CommandFailure("this shm was built without libnats: no bridge to measure") }
}
#endif
