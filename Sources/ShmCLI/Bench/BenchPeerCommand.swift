import ArgumentParser
import Shm

/// The other process of `shm bench` (spawned by it; not for direct use).
struct BenchPeerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bench-peer", shouldDisplay: false)

    @Option var role: String
    @Option var mechanism: String
    @Option var size: Int
    @Option var cpu: Int?
    @Option var name: String?
    @Option var capacity: Int?
    @Option(name: .customLong("read-fd")) var readFD: Int32?
    @Option(name: .customLong("write-fd")) var writeFD: Int32?
    @Option var port: UInt16?
    @Option var count: Int = 0
    @Option var subscribers: Int = 1
    @Option var wait: BenchWait = .spin
    @Flag var streaming = false
    @Flag var copy = false
    @Option var pool = "automatic"
    @Option(transform: parseOverflow) var overflow: OverflowPolicy = .overwriteOldest
    @Option var batch: Int = 1

    func run() throws {
        guard let mechanism = BenchMechanism(rawValue: mechanism) else { throw BenchFailure("unknown mechanism") }
        if let cpu { try? CPU.pinCurrentThread(to: cpu) }
        let endpoint = try BenchSetup.child(mechanism, size: size, name: name, capacity: capacity,
                                            readFD: readFD, writeFD: writeFD, port: port,
                                            service: ServiceBenchParameters(subscribers: subscribers, wait: wait, streaming: streaming, copy: copy,
                                                                            pool: pool, overflow: overflow))
        switch role {
        case "pong": try pong(endpoint)
        case "produce": try produce(endpoint, count: count)
        case "drain":
            guard let subscriberSide = endpoint as? PubSubEndpoint else { throw BenchFailure("drain is for pubsub") }
            try subscriberSide.drain(count: count)
        default: throw BenchFailure("unknown role \(role)")
        }
    }

    /// Echoes every message until the stop message (sequence UInt64.max).
    private func pong(_ endpoint: some BenchEndpoint) throws {
        while true {
            let seq = try endpoint.receive()
            if seq == .max { return }
            try endpoint.send(seq)
        }
    }

    /// Streams `count` messages as fast as the mechanism takes them.
    private func produce(_ endpoint: some BenchEndpoint, count: Int) throws {
        if let stream = endpoint as? StreamFloorEndpoint {
            try stream.produce(count: count, batch: batch)
            return
        }
        if batch > 1, let ring = endpoint as? RingEndpoint {
            var seq: UInt64 = 0
            while seq < UInt64(count) {
                let end = min(UInt64(count), seq + UInt64(batch))
                try ring.producer.publishBatch { () throws -> Void in
                    while seq < end { try ring.send(seq); seq += 1 }
                }
            }
        } else {
            for seq in 0..<UInt64(count) { try endpoint.send(seq) }
        }
        // Wait for the consumer's acknowledgement so our end stays open until it has read everything.
        _ = try? endpoint.receive()
    }
}
