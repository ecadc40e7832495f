#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Shm
import ShmLog

/// `shm bench instructions`: one in-process hot path run N times, for
/// counting instructions under callgrind (`.ci/instructions`, the CI's
/// regression guard): the count of a run of 2N minus that of N, over N, is
/// the cost of one operation with set-up and start-up cancelled out.
struct InstructionBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "instructions",
        abstract: "Run one hot path N times in this process (for callgrind instruction counts; see .ci/instructions).",
        discussion: """
            Operations: pubsub (loan 64 B, write, send, receive, read, release), pubsub-grown (the same over a \
            pool that grew from one chunk during the warm-up: growth costs nothing once grown), request-response (an 8-byte \
            request loaned, written, sent, read in place, answered with a loaned response read in place), \
            ring (send and receive a UInt64 through an SPSC ring), log-append \
            (append a 40-byte record, no sync), log-append-exclusive (the same through the exclusive appender with \
            coarse timestamps). 1,000 warm-up iterations come first.
            """)

    enum Operation: String, ExpressibleByArgument, CaseIterable {
        case pubsub, pubsubGrown = "pubsub-grown", requestResponse = "request-response", ring, logAppend = "log-append"
        case logAppendExclusive = "log-append-exclusive"
    }

    @Option(help: "The operation: pubsub, pubsub-grown, request-response, ring, log-append, log-append-exclusive.")
    var operation: Operation
    @Option(help: "Iterations after the warm-up.") var iterations = 10_000

    func run() throws {
        let name = "bench.instr.\(getpid())"
        let count = 1000 + iterations
        // One function per operation, never inlined here: a change to one
        // operation's loop must not move another's count (the request/response
        // loop once gained 166 instructions when a case was added to a shared switch).
        let checksum: UInt64
        switch operation {
        case .pubsub, .pubsubGrown: checksum = try Self.pubsub(name, count: count, grown: operation == .pubsubGrown)
        case .requestResponse: checksum = try Self.requestResponse(name, count: count)
        case .ring: checksum = try Self.ring(name, count: count)
        case .logAppend, .logAppendExclusive: checksum = try Self.logAppend(count: count, exclusive: operation == .logAppendExclusive)
        }
        StandardStreams.printLine("\(operation.rawValue): \(iterations) iterations (checksum \(checksum))")
    }

    @inline(never)
    static func pubsub(_ name: String, count: Int, grown: Bool) throws -> UInt64 {
        var checksum: UInt64 = 0
        let node = try Node(name: "bench-instructions")
        let service = try node.publishSubscribe(name, slicesOf: UInt8.self, maxLength: 64,
                                                config: .init(maxPublishers: 1, maxSubscribers: 1, subscriberBufferSize: 4))
        let publisher = try service.publisher(allocation: grown ? .growing(initialChunks: 1) : .reserved)
        let subscriber = try service.subscriber()
        if grown {
            // Grow in chunks to as many as the reserved pool has (12: four
            // borrowed, four queued, four loaned at once), then back to
            // one in flight: the same free chunks between collections of
            // returns, so the two counts differ only by what segments cost.
            do {
                for i in 0..<4 { try publisher.send(copyOf: CollectionOfOne(UInt8(i))) }
                let r1 = try subscriber.receive(timeout: .seconds(1)), r2 = try subscriber.receive(timeout: .seconds(1))
                let r3 = try subscriber.receive(timeout: .seconds(1)), r4 = try subscriber.receive(timeout: .seconds(1))
                for i in 0..<4 { try publisher.send(copyOf: CollectionOfOne(UInt8(i))) }
                let a = try publisher.loanUninitialized(count: 64), b = try publisher.loanUninitialized(count: 64)
                let c = try publisher.loanUninitialized(count: 64), d = try publisher.loanUninitialized(count: 64)
                _ = (a.count, b.count, c.count, d.count, r1.count, r2.count, r3.count, r4.count)
            }
            while try subscriber.tryReceive() != nil {}
            guard publisher.footprint.segments > 1 else { throw CommandFailure("the pool did not grow") }
        }
        for i in 0..<count {
            let loan = try publisher.loanUninitialized(count: 64)
            UnsafeMutableRawPointer(loan.unsafeBuffer.baseAddress!).storeBytes(of: UInt64(i), as: UInt64.self)
            _ = try loan.assumeInitialized().send()
            guard let sample = try subscriber.tryReceive() else { throw CommandFailure("sample \(i) missing") }
            checksum &+= sample.unsafeBytes.load(as: UInt64.self)
        }
        return checksum
    }

    @inline(never)
    static func requestResponse(_ name: String, count: Int) throws -> UInt64 {
        var checksum: UInt64 = 0
        let node = try Node(name: "bench-instructions")
        let service = try node.requestResponse(name, request: UInt64.self, response: UInt64.self)
        let client = try service.client(), server = try service.server()
        for i in 0..<count {
            // Zero-copy: loaned, written and read in place both ways.
            let pending = try client.loanUninitialized().write(UInt64(i)).send()
            guard let request = try server.tryReceiveInPlace() else { throw CommandFailure("request \(i) missing") }
            try request.loanResponse().write(request.payload &+ 1).send()
            checksum &+= try pending.receive(timeout: .seconds(1)).payload
        }
        return checksum
    }

    @inline(never)
    static func ring(_ name: String, count: Int) throws -> UInt64 {
        var checksum: UInt64 = 0
        let ring = try MessageRing.create(name, capacity: 1 << 16)
        let producer = try ring.producer(), consumer = try ring.consumer()
        for i in 0..<count {
            guard try producer.trySend(value: UInt64(i)), let value = try consumer.tryReceive(UInt64.self) else {
                throw CommandFailure("message \(i) missing")
            }
            checksum &+= value
        }
        return checksum
    }

    @inline(never)
    static func logAppend(count: Int, exclusive: Bool) throws -> UInt64 {
        var checksum: UInt64 = 0
        let directory = "/dev/shm/shm-bench-instructions.\(getpid())"
        let log = try Log.create(directory: directory, config: LogConfig(segmentSize: 64 << 20))
        defer { removeDirectoryOfFiles(directory) }
        let appender = exclusive ? try log.exclusiveAppender(timestamps: .coarse) : try log.appender()
        var record = [UInt8](repeating: 0x5a, count: 40)
        for i in 0..<count {
            record.withUnsafeMutableBytes { $0.storeBytes(of: UInt64(i), as: UInt64.self) }
            checksum &+= try record.withUnsafeBytes { try appender.append($0) }.sequence
        }
        return checksum
    }
}
