#if canImport(Glibc)
import Glibc
#endif
import Testing
import Shm
import Synchronization
import ShmTestSupport
@testable import ShmBridge

/// What a bridge puts on NATS and takes from it, seen by a plain NATS
/// client in this process: the documented headers, batches, and the
/// importer's checks when a subject's headers change mid-stream.
@Suite("Bridge wire traffic", .serialized)
struct WireTrafficTests {
    /// A bridge running on a thread of this process until the value is dropped.
    final class RunningBridge {
        let bridge: Bridge
        private let finished = Mutex(false)

        init(_ configuration: BridgeConfiguration) throws {
            bridge = try Bridge(configuration)
            let box = UncheckedBox(self)
            BlockingPool.shared.submit {
                try? box.value.bridge.run()
                box.value.finished.withLock { $0 = true }
            }
        }

        deinit {
            bridge.stop()
            _ = TestSupport.eventually(.seconds(10)) { finished.withLock { $0 } }
        }

        func counters(_ service: String) -> ServiceStatistics? { bridge.statistics.first { $0.service == service } }
    }

    /// Every sample published here reaches a plain NATS subscriber once, in
    /// order: a lone sample as one message carrying Shm-Service, Shm-Type
    /// and Shm-Sample; samples that waited together as a Shm-Batch whose
    /// entries carry the same facts.
    @Test func samplesGoOutWithTheDocumentedHeadersAloneOrInBatches() throws {
        guard let server = try NatsServerProcess.start() else { return }
        let name = TestSupport.uniqueName("wire-out")
        let node = try Node(name: "test-wire")
        let service = try node.publishSubscribe(name, slicesOf: UInt8.self, maxLength: 64,
                                                config: .init(subscriberBufferSize: 256, overflow: .block))
        let reader = try NatsConnection(url: server.url, name: "reader", waitForServer: false)
        let subscription = try reader.subscribe(WireFormat.sampleSubject(prefix: WireFormat.defaultPrefix, service: name))
        try reader.flush()
        let running = try RunningBridge(BridgeConfiguration(url: server.url, exports: [name], name: "wire-out"))
        #expect(TestSupport.eventually(.seconds(20)) { service.ports.contains { $0.kind == "subscriber" } })
        let publisher = try service.publisher()
        func send(_ value: UInt8, count: Int) throws {
            let loan = try publisher.loanUninitialized(count: count)
            for index in 0..<count { loan.unsafeBuffer[index] = value &+ UInt8(truncatingIfNeeded: index) }
            _ = try loan.assumeInitialized().send()
        }
        // One sample alone: a plain message.
        try send(1, count: 40)
        let lone = try #require(try subscription.next(timeout: .seconds(10)))
        #expect(lone.header(WireFormat.Header.service) == name)
        #expect(lone.header(WireFormat.Header.type).flatMap(WireFormat.decodeType)?.0 == service.payloadType)
        #expect(lone.header(WireFormat.Header.batch) == nil)
        let info = try #require(lone.header(WireFormat.Header.sample).flatMap(WireFormat.SampleInfo.init))
        #expect(info.origin == running.bridge.origin && info.publisher == publisher.portID && info.length == 40 && info.part == nil)
        #expect(Array(lone.data) == (0..<40).map { 1 &+ UInt8($0) })
        // A burst: every sample once, in order, whether alone or batched.
        let burst = 200
        for value in 0..<burst { try send(UInt8(truncatingIfNeeded: value), count: 1 + value % 64) }
        var sequences: [UInt64] = [info.sequence], batches = 0
        while sequences.count < burst + 1, let message = try subscription.next(timeout: .seconds(10)) {
            #expect(message.header(WireFormat.Header.service) == name)
            if let single = message.header(WireFormat.Header.sample).flatMap(WireFormat.SampleInfo.init) {
                #expect(single.publisher == publisher.portID && message.data.count == single.length)
                sequences.append(single.sequence)
                continue
            }
            let header = try #require(message.header(WireFormat.Header.batch))
            let (origin, count) = try #require(header.utf8.withContiguousStorageIfAvailable { WireFormat.batchHeader(bytes: $0) } ?? nil)
            #expect(origin == running.bridge.origin && count >= 2)
            let entries = try #require(WireFormat.batchEntries(message.data, count: count))
            for entry in entries {
                let value = UInt8(truncatingIfNeeded: sequences.count - 1)
                #expect(entry.publisher == publisher.portID && entry.bytes.count == 1 + (sequences.count - 1) % 64)
                #expect(entry.bytes.first == value)
                sequences.append(entry.sequence)
            }
            batches += 1
        }
        #expect(sequences.count == burst + 1)
        // An empty sample goes alone (a batch entry holds at least a byte) and arrives as one.
        try send(0, count: 0)
        let empty = try #require(try subscription.next(timeout: .seconds(10)))
        #expect(empty.header(WireFormat.Header.sample).flatMap(WireFormat.SampleInfo.init)?.length == 0 && empty.data.isEmpty)
        #expect(zip(sequences, sequences.dropFirst()).allSatisfy { $0 < $1 }, "\(sequences)")
        print("wire traffic: \(burst) samples in a burst went out with \(batches) batch messages")
    }

    /// The importer checks a subject's Shm-Service and Shm-Type once and
    /// then only compares them: a type that changes mid-stream is still
    /// refused and counted per sample (a batch's three count three), the
    /// right one still delivered, and hostile
    /// Shm-Sample or Shm-Batch values are counted as malformed.
    @Test func aTypeChangedMidStreamIsRefusedAndHostileHeadersAreCounted() throws {
        guard let server = try NatsServerProcess.start() else { return }
        let name = TestSupport.uniqueName("wire-in")
        let node = try Node(name: "test-wire")
        let service = try node.publishSubscribe(name, slicesOf: UInt8.self, maxLength: 64,
                                                config: .init(subscriberBufferSize: 64, overflow: .block))
        let subscriber = try service.subscriber()
        let running = try RunningBridge(BridgeConfiguration(url: server.url, imports: [name], name: "wire-in"))
        let writer = try NatsConnection(url: server.url, name: "writer", waitForServer: false)
        let subject = WireFormat.sampleSubject(prefix: WireFormat.defaultPrefix, service: name)
        let right = WireFormat.typeHeader(service.payloadType, config: nil)
        let wrong = WireFormat.typeHeader(PayloadType(name: "Other", size: 64, alignment: 1), config: nil)
        var sequence: UInt64 = 0
        func send(type: String, sample: String? = nil, batch: String? = nil, bytes: [UInt8]) throws {
            sequence += 1
            let info = WireFormat.SampleInfo(origin: 0xfeed, publisher: 7, sequence: sequence, timestamp: 1, length: bytes.count)
            var headers = [(WireFormat.Header.service, name), (WireFormat.Header.type, type)]
            if let batch { headers.append((WireFormat.Header.batch, batch)) } else { headers.append((WireFormat.Header.sample, sample ?? info.encoded)) }
            try bytes.withUnsafeBytes { try writer.publish(subject, headers: headers, payload: $0) }
            try writer.flush()
        }
        func received() -> [UInt8]? {
            guard let sample = try? subscriber.receive(timeout: .seconds(10)) else { return nil }
            return Array(sample.unsafeBytes)
        }
        try send(type: right, bytes: [1, 2, 3])
        #expect(received() == [1, 2, 3])
        try send(type: wrong, bytes: [4, 5, 6])       // the same subject, another type
        var batch = WireFormat.BatchWriter()           // and a batch of three of the other type
        for value: UInt8 in 20..<23 {
            sequence += 1
            _ = [value].withUnsafeBytes { batch.add(publisher: 7, sequence: sequence, timestamp: 1, bytes: $0, limit: 4096) }
        }
        try batch.withFrame { frame throws(BridgeError) in
            try writer.publish(subject, headers: [(WireFormat.Header.service, name), (WireFormat.Header.type, wrong),
                                                  (WireFormat.Header.batch, "feed;3")], payload: frame)
        }
        try send(type: right, bytes: [7, 8, 9])
        #expect(received() == [7, 8, 9])               // [4, 5, 6] never arrived
        for hostile in ["", "feed;7;3", "feed;7;99;1;3;0/1;0", "feed;7;99;1;99999999999", "feed;7;-1;1;3", "xyz;7;99;1;3",
                        "feed;7;99;1;3;;", "feed;7;18446744073709551616;1;3"] {
            try send(type: right, sample: hostile, bytes: [1, 1, 1])
        }
        for hostile in ["feed", "feed;0", "feed;x", ";2", "feed;2;3"] {
            try send(type: right, batch: hostile, bytes: [UInt8](repeating: 0, count: 48))
        }
        // A subject that is not exactly <prefix>.ps.<Shm-Service> goes nowhere.
        let info = WireFormat.SampleInfo(origin: 0xfeed, publisher: 7, sequence: sequence + 1, timestamp: 1, length: 3)
        try [UInt8](repeating: 9, count: 3).withUnsafeBytes {
            try writer.publish(subject + "x", headers: [(WireFormat.Header.service, name), (WireFormat.Header.type, right),
                                                        (WireFormat.Header.sample, info.encoded)], payload: $0)
        }
        try send(type: right, bytes: [10, 11, 12])
        #expect(received() == [10, 11, 12])
        try send(type: right, bytes: [])                 // an empty slice is a sample too
        #expect(received() == [])
        // The importer counts a sample after sending it: wait for the counters to catch up.
        #expect(TestSupport.eventually(.seconds(5)) {
            running.counters(name)?["type_mismatches"] == 4 && running.counters(name)?["in"] == 4
        })
        let counters = try #require(running.counters(name))
        #expect(counters["malformed"] == 13, "malformed")
        #expect(counters["in"] == 4)
        var leftover = false
        if let _ = try subscriber.tryReceive() { leftover = true }
        #expect(!leftover, "nothing else was delivered")
    }
}
