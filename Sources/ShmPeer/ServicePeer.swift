#if canImport(Glibc)
import Glibc
#endif
import Shm
import ShmTestSupport

/// Waits until `subscribers` subscribers are connected, then publishes `count` samples as producer `id`.
func servicePublish(_ name: String, id: UInt32, count: UInt64, subscribers: Int) throws {
    let node = try Node(name: "peer-pub")
    let service = try testService(node, name)
    let publisher = try service.publisher()
    publisher.sendTimeout = .seconds(30)
    let deadline = monotonicNanoseconds() + 30_000_000_000
    while publisher.connectedSubscribers < subscribers {
        guard monotonicNanoseconds() < deadline else { throw PayloadError("only \(publisher.connectedSubscribers) subscribers connected") }
        _ = try publisher.loanUninitialized() // a loan refreshes connections; dropping it returns the sample
        usleep(1000)
    }
    print("connected \(publisher.connectedSubscribers)")
    for sequence in 0..<count {
        let reached = try publisher.loanUninitialized().write(TestSample(producer: id, sequence: sequence)).send()
        guard reached >= subscribers else { throw PayloadError("sample \(sequence) reached \(reached) of \(subscribers)") }
    }
    print("published \(count)")
    // Stay until the subscribers are done with our pool.
    while publisher.connectedSubscribers > 0 && monotonicNanoseconds() < deadline + 30_000_000_000 {
        _ = try? publisher.loanUninitialized()
        usleep(2000)
    }
}

/// Receives `count` samples from `publishers` publishers, checking each
/// publisher's sequence numbers (0, 1, 2, … with no gap or repeat).
func serviceSubscribe(_ name: String, count: Int, publishers: Int) throws {
    let node = try Node(name: "peer-sub")
    let service = try testService(node, name)
    let subscriber = try service.subscriber()
    print("subscribed")
    var next: [UInt32: UInt64] = [:]
    for _ in 0..<count {
        let sample = try subscriber.receive(timeout: .seconds(30))
        let value = sample.payload
        guard value.isValid else { throw PayloadError("invalid sample \(value)") }
        let expected = next[value.producer, default: 0]
        guard value.sequence == expected else { throw PayloadError("producer \(value.producer): got \(value.sequence), expected \(expected)") }
        next[value.producer] = expected + 1
    }
    guard next.count == publishers else { throw PayloadError("heard from \(next.count) publishers, expected \(publishers)") }
    print("received \(count) in order from \(next.count) publishers")
}

/// Publishes samples forever (one every `intervalMicroseconds`); to be killed.
func servicePublishForever(_ name: String, id: UInt32, intervalMicroseconds: UInt32, history: Int, buffer: Int = 16) throws {
    let node = try Node(name: "peer-pub")
    let service = try testService(node, name, buffer: buffer, history: history, overflow: .overwriteOldest)
    let publisher = try service.publisher()
    print("publisher \(publisher.portID)")
    var sequence: UInt64 = 0
    while true {
        try publisher.loanUninitialized().write(TestSample(producer: id, sequence: sequence)).send()
        sequence += 1
        usleep(intervalMicroseconds)
    }
}

/// Waits for one subscriber, publishes `count` samples and leaves at once
/// (its pool keeps its name until the subscriber has mapped it).
func servicePublishBurstAndLeave(_ name: String, count: UInt64) throws {
    let node = try Node(name: "peer-burst")
    let service = try testService(node, name)
    let publisher = try service.publisher()
    guard try publisher.waitForSubscribers(1, timeout: .seconds(20)) else { throw PayloadError("no subscriber") }
    for sequence in 0..<count {
        try publisher.loanUninitialized().write(TestSample(producer: 9, sequence: sequence)).send()
    }
    print("sent")
    let start = monotonicNanoseconds()
    _ = consume publisher
    print("left after \((monotonicNanoseconds() - start) / 1_000_000) ms")
}

/// Subscribes and stalls until a line arrives on stdin, then receives until
/// `expect` samples came or 2 s pass without one, and prints
/// `got 1,2,… lost N`.
func serviceSubscribeStalled(_ name: String, buffer: Int, overflow: String, expect: Int) throws {
    let policy: OverflowPolicy = switch overflow {
    case "overwrite": .overwriteOldest
    case "discard": .discard
    default: .block
    }
    let node = try Node(name: "peer-stalled")
    let service = try testService(node, name, buffer: buffer, overflow: policy)
    let subscriber = try service.subscriber()
    print("subscribed")
    _ = readLine()
    var got: [UInt64] = []
    while got.count < expect, let sample = try? subscriber.receive(timeout: .seconds(2)) { got.append(sample.payload.sequence) }
    print("got \(got.map(String.init).joined(separator: ",")) lost \(subscriber.lostSamples)")
}

/// Subscribes, takes samples without ever giving them back (a hostile
/// subscriber), and hangs; to be killed.
func serviceLeakAndHang(_ name: String) throws {
    let node = try Node(name: "peer-leak")
    let service = try testService(node, name, buffer: 16, history: 0, overflow: .overwriteOldest)
    let subscriber = try service.subscriber()
    print("subscribed")
    while true {
        _ = subscriber.leakForTesting()
        usleep(500)
    }
}

/// Opens the test service with another payload type; reports the error.
func serviceOpenMismatched(_ name: String) throws {
    let node = try Node(name: "peer-mismatch")
    _ = try node.publishSubscribe(name, of: UInt16.self, typeName: "swiftshm.tests.Other",
                                  config: .init(maxPublishers: 4, maxSubscribers: 8, subscriberBufferSize: 64, overflow: .block))
    print("opened")
}

/// A user-shaped program, not a test closure: publishers and subscribers in
/// one process, each publisher used last in a helper that returns (so an
/// optimized build releases it there), payloads checked. Prints
/// "received N of M, K damaged". Built in release by the release CI run.
func servicePublishAndSubscribeInOneProcess(_ name: String, publishers: Int, subscribers: Int, rounds: Int) throws {
    let node = try Node(name: "peer-oneproc")
    let service = try node.publishSubscribe(name, of: TestSample.self, typeName: TestSample.typeName,
                                            config: .init(maxPublishers: publishers, maxSubscribers: subscribers,
                                                          subscriberBufferSize: publishers * rounds))
    let readers = try (0..<subscribers).map { _ in try service.subscriber() }
    func publish(_ id: UInt32) throws {
        let publisher = try service.publisher()
        for sequence in 0..<UInt64(rounds) {
            let reached = try publisher.loanUninitialized().write(TestSample(producer: id, sequence: sequence)).send()
            guard reached == subscribers else { throw PayloadError("sample reached \(reached) of \(subscribers) subscribers") }
        }
    }
    for id in 0..<UInt32(publishers) { try publish(id) }
    var received = 0, damaged = 0
    for reader in readers {
        var next = [UInt64](repeating: 0, count: publishers)
        while let sample = try reader.tryReceive() {
            let value = sample.payload
            if value.isValid, Int(value.producer) < publishers, next[Int(value.producer)] == value.sequence {
                next[Int(value.producer)] += 1
                received += 1
            } else {
                damaged += 1
            }
        }
    }
    print("received \(received) of \(publishers * subscribers * rounds), \(damaged) damaged")
}

/// Publishes `count` samples with history `history` before anyone
/// subscribes, waits (bounded) for one subscriber — connecting replays the
/// history to it — prints "replayed" and leaves.
func servicePublishThenReplay(_ name: String, count: UInt64, history: Int) throws {
    let node = try Node(name: "peer-history")
    let service = try testService(node, name, buffer: 16, history: history, overflow: .overwriteOldest)
    let publisher = try service.publisher()
    for sequence in 0..<count {
        try publisher.loanUninitialized().write(TestSample(producer: 5, sequence: sequence)).send()
    }
    print("sent")
    guard try publisher.waitForSubscribers(1, timeout: .seconds(20)) else { throw PayloadError("no subscriber") }
    print("replayed")
}
