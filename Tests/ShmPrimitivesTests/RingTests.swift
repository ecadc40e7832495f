#if canImport(Glibc)
import Glibc
#endif
import CShmTestSupport
import Testing
import ShmTestSupport
@testable import ShmPrimitives
@testable import ShmSystem

/// A ring in private anonymous shared memory, for single-process unit tests.
func makeRing(capacity: Int, maxMessageSize: Int? = nil) throws -> MessageRing {
    let (mapping, _) = try AnonymousSharedMemory.map(size: MessageRing.requiredSize(capacity: capacity))
    return try MessageRing.initialize(mapping.bytes, capacity: capacity, maxMessageSize: maxMessageSize)
}

@Suite("SPSC ring")
struct RingTests {
    @Test func sendAndReceiveCopies() throws {
        let ring = try makeRing(capacity: 4096)
        let producer = try ring.producer(), consumer = try ring.consumer()
        #expect(try consumer.tryReceive() == nil)
        try producer.send([1, 2, 3])
        try producer.send([])
        try producer.send(Array(repeating: 9, count: 2032))
        #expect(try consumer.receive(timeout: .seconds(1)) == [1, 2, 3])
        #expect(try consumer.receive(timeout: .seconds(1)) == [])
        #expect(try consumer.receive(timeout: .seconds(1)) == Array(repeating: 9, count: 2032))
        #expect(try consumer.tryReceive() == nil)
        #expect(ring.usedBytes == 0)
    }

    @Test func wrapAroundKeepsEveryMessageIntactAndInOrder() throws {
        let ring = try makeRing(capacity: 1024)
        let producer = try ring.producer(), consumer = try ring.consumer()
        var generator = SystemRandomNumberGenerator()
        var sent: [[UInt8]] = []
        var received: [[UInt8]] = []
        for round in 0..<20_000 {
            let size = Int.random(in: 0...ring.maxMessageSize, using: &generator)
            let message = (0..<size).map { UInt8(truncatingIfNeeded: $0 &+ round) }
            while !(try producer.trySend(message)) {
                received.append(try #require(try consumer.tryReceive()))
            }
            sent.append(message)
        }
        while let message = try consumer.tryReceive() { received.append(message) }
        #expect(received == sent)
    }

    @Test func fullAndEmptyAreReportedAndTimeoutsAreBounded() throws {
        let ring = try makeRing(capacity: 256)
        let producer = try ring.producer(waitStrategy: .block), consumer = try ring.consumer(waitStrategy: .block)
        var sent = 0
        while try producer.trySend(Array(repeating: UInt8(sent), count: 24)) { sent += 1 }
        #expect(sent == 256 / MessageRing.recordSize(24))

        let start = monotonicNanoseconds()
        #expect(throws: QueueError.timedOut(.milliseconds(50))) {
            try producer.send(Array(repeating: 0, count: 24), timeout: .milliseconds(50))
        }
        for i in 0..<sent { #expect(try consumer.receive(timeout: .seconds(1)) == Array(repeating: UInt8(i), count: 24)) }
        #expect(throws: QueueError.timedOut(.milliseconds(50))) { try consumer.receive(timeout: .milliseconds(50)) }
        #expect(monotonicNanoseconds() - start < 5_000_000_000)
    }

    @Test func sizesAreChecked() throws {
        let ring = try makeRing(capacity: 1024, maxMessageSize: 100)
        let producer = try ring.producer(), consumer = try ring.consumer()
        #expect(throws: QueueError.messageTooLarge(size: 101, maximum: 100)) { try producer.send(Array(repeating: 0, count: 101)) }
        try producer.send(Array(repeating: 7, count: 100))
        var small = [UInt8](repeating: 0, count: 10)
        #expect(throws: QueueError.bufferTooSmall(needed: 100, available: 10)) {
            try small.withUnsafeMutableBytes { _ = try consumer.tryReceive(into: $0) }
        }
        #expect(try consumer.receive(timeout: .seconds(1)) == Array(repeating: 7, count: 100)) // still queued
        #expect(throws: QueueError.self) { try makeRing(capacity: 1000) }
        #expect(throws: QueueError.self) { try makeRing(capacity: 1024, maxMessageSize: 600) }
        let (tiny, _) = try AnonymousSharedMemory.map(size: 4096)
        #expect(throws: QueueError.regionTooSmall(needed: MessageRing.dataOffset + 8192, available: 4096)) {
            try MessageRing.initialize(tiny.bytes, capacity: 8192)
        }
    }

    @Test func zeroCopyClaimCommitAbortAndRead() throws {
        let ring = try makeRing(capacity: 4096)
        let producer = try ring.producer(), consumer = try ring.consumer()
        guard let claim = try producer.tryClaim(count: 64) else {
            Issue.record("an empty ring had no room")
            return
        }
        claim.unsafeBytes.storeBytes(of: UInt64(42), as: UInt64.self)
        #expect(try consumer.tryReceive() == nil) // not visible before commit
        claim.commit(count: 8)
        let aborted = try producer.claim(count: 32)
        aborted.unsafeBytes.storeBytes(of: UInt64(99), as: UInt64.self)
        aborted.abort()
        do {
            let dropped = try producer.claim(count: 16) // dropped without commit
            _ = dropped.unsafeBytes
        }
        try producer.send(count: 16) { (buffer) throws(Never) -> Int in
            buffer.storeBytes(of: UInt64(7), as: UInt64.self)
            return 8
        }
        let message = try consumer.read(timeout: .seconds(1))
        #expect(message.unsafeBytes.count == 8 && message.unsafeBytes.load(as: UInt64.self) == 42)
        message.release()
        let value = try consumer.receive(timeout: .seconds(1)) { (bytes) throws(Never) -> UInt64 in bytes.load(as: UInt64.self) }
        #expect(value == 7)
        #expect(try consumer.tryReceive() == nil)
    }

    @Test func typedValuesAreSentInPlace() throws {
        struct Sample: BitwiseCopyable, Equatable { var x: Double; var y: Double; var id: UInt32 }
        let ring = try makeRing(capacity: 4096)
        let producer = try ring.producer(), consumer = try ring.consumer()
        try producer.send(value: Sample(x: 1.5, y: -2, id: 7))
        try producer.send(value: UInt16(3))
        #expect(try consumer.receive(Sample.self, timeout: .seconds(1)) == Sample(x: 1.5, y: -2, id: 7))
        #expect(throws: QueueError.sizeMismatch(expected: 8, actual: 2)) { try consumer.receive(UInt64.self, timeout: .seconds(1)) }
    }

    @Test func drainHandlesABatchWithOneRelease() throws {
        let ring = try makeRing(capacity: 1 << 16)
        let producer = try ring.producer(), consumer = try ring.consumer()
        for i in 0..<500 { try producer.send(value: UInt32(i)) }
        var seen: [UInt32] = []
        let n = try consumer.drain(limit: 300) { seen.append($0.load(as: UInt32.self)) }
        #expect(n == 300)
        _ = try consumer.drain { seen.append($0.load(as: UInt32.self)) }
        #expect(seen == (0..<500).map(UInt32.init))
    }

    @Test func garbageIndicesAreAnErrorNotACrash() throws {
        let ring = try makeRing(capacity: 1024)
        let producer = try ring.producer(), consumer = try ring.consumer()
        try producer.send([1, 2, 3])
        // A hostile peer: garbage header and garbage tail, so resynchronizing is impossible too.
        ring.data.storeBytes(of: UInt64(0xdead_0000_0003), toByteOffset: 8, as: UInt64.self)
        ring.tail.pointee.store(1 << 40, ordering: .relaxed)
        #expect(throws: QueueError.self) { try consumer.tryReceive() }
        #expect(throws: QueueError.self) { try consumer.receive(timeout: .milliseconds(20)) }
        #expect(throws: QueueError.self) { try consumer.drain { _ in } }
        ring.tail.pointee.store(16, ordering: .relaxed)
        ring.head.pointee.store(UInt64.max - 5, ordering: .relaxed)
        #expect(throws: QueueError.self) { try ring.producer() }
        #expect(throws: QueueError.self) {
            for _ in 0..<100 { try producer.send(Array(repeating: 1, count: 400)) } // must reach a check of head
        }
    }

    @Test func garbageRecordsCostThoseRecordsAndTheRingRecovers() throws {
        let ring = try makeRing(capacity: 1024)
        let producer = try ring.producer(), consumer = try ring.consumer()
        try producer.send([1, 2, 3, 4])
        try producer.send([5, 6])
        ring.data.storeBytes(of: UInt32(0xdead), toByteOffset: 12, as: UInt32.self) // type of the first record
        let error = #expect(throws: QueueError.self) { try consumer.tryReceive() }
        guard case .corruptRecord = error else { Issue.record("got \(String(describing: error))"); return }
        #expect(ring.lostRecords == 1)
        try producer.send([7])
        #expect(try consumer.receive(timeout: .seconds(1)) == [7])
        // A length that runs past what was written.
        try producer.send([8, 8])
        ring.data.storeBytes(of: UInt32(900), toByteOffset: (Int(producer.tail) - MessageRing.recordSize(2)) & 1023 + 8, as: UInt32.self)
        #expect(throws: QueueError.self) { try consumer.tryReceive() }
        try producer.send([9])
        #expect(try consumer.receive(timeout: .seconds(1)) == [9])
    }

    @Test func randomGarbageNeverCrashesOrHangs() throws {
        let ring = try makeRing(capacity: 512)
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2_000 {
            let producer = try? ring.producer(), consumer = try? ring.consumer()
            _ = try? producer?.trySend(Array(repeating: 3, count: Int.random(in: 0...200)))
            // Scribble over a random shared word or data byte.
            let offset = [MessageRing.tailOffset, MessageRing.headOffset, MessageRing.dataOffset + Int.random(in: 0..<512)].randomElement()!
            ring.region.storeBytes(of: UInt64.random(in: 0...UInt64.max, using: &generator) & [0xff, 0xffff, .max, 8 * 0x3f].randomElement()!,
                                   toByteOffset: offset & ~7, as: UInt64.self)
            _ = try? consumer?.tryReceive()
            _ = try? consumer?.drain { _ in }
            _ = try? consumer?.receive(timeout: .milliseconds(1))
            _ = try? producer?.send([1], timeout: .milliseconds(1))
            // Reset to a sane state now and then so both paths keep being exercised.
            if Bool.random() {
                ring.head.pointee.store(0, ordering: .relaxed)
                ring.tail.pointee.store(0, ordering: .relaxed)
            }
        }
    }

    @Test func aDamagedTagHidesTheRecordAndNothingElse() throws {
        let ring = try makeRing(capacity: 1024)
        let producer = try ring.producer(), consumer = try ring.consumer()
        try producer.send([1])
        ring.data.storeBytes(of: UInt64(12345), as: UInt64.self) // the tag: now it looks unpublished
        #expect(try consumer.tryReceive() == nil)
        #expect(throws: QueueError.timedOut(.milliseconds(10))) { try consumer.receive(timeout: .milliseconds(10)) }
    }

    @Test func aRestartedProducerContinuesAfterWhatItsPredecessorPublished() throws {
        let ring = try makeRing(capacity: 1024)
        let consumer = try ring.consumer()
        do {
            let first = try ring.producer()
            try first.send([1])
            try first.send([2])
            ring.tail.pointee.store(UInt64(MessageRing.recordSize(1)), ordering: .relaxed)
            // As if it died after publishing [2] but before storing tail.
        }
        let second = try ring.producer()
        try second.send([3])
        #expect(try consumer.receive(timeout: .seconds(1)) == [1])
        #expect(try consumer.receive(timeout: .seconds(1)) == [2])
        #expect(try consumer.receive(timeout: .seconds(1)) == [3])
    }

    @Test func headerIsValidatedOnAttach() throws {
        let ring = try makeRing(capacity: 1024)
        #expect(try MessageRing(attaching: ring.region).capacity == 1024)
        ring.region.storeBytes(of: UInt64(2048), toByteOffset: 8, as: UInt64.self) // capacity, under the checksum
        #expect(throws: QueueError.invalidLayout("SPSC ring header checksum mismatch")) { try MessageRing(attaching: ring.region) }
        let (blank, _) = try AnonymousSharedMemory.map(size: 8192)
        #expect(throws: QueueError.self) { try MessageRing(attaching: blank.bytes) }
    }

    @Test func steadyStateSendAndReceiveAllocateNothing() throws {
        let ring = try makeRing(capacity: 1 << 16)
        let producer = try ring.producer(waitStrategy: .busySpin), consumer = try ring.consumer(waitStrategy: .busySpin)
        let payload = UnsafeMutableRawBufferPointer.allocate(byteCount: 256, alignment: 8)
        let output = UnsafeMutableRawBufferPointer.allocate(byteCount: 256, alignment: 8)
        defer { payload.deallocate(); output.deallocate() }
        payload.initializeMemory(as: UInt8.self, repeating: 5)
        func round(_ i: Int) throws {
            try producer.send(UnsafeRawBufferPointer(rebasing: payload[0..<(i % 256)]), timeout: .seconds(1))
            _ = try consumer.receive(into: output, timeout: .seconds(1))
            let claim = try producer.claim(count: 64, timeout: .seconds(1))
            claim.commit()
            let message = try consumer.read(timeout: .seconds(1))
            message.release()
            try producer.send(value: UInt64(i), timeout: .seconds(1))
            _ = try consumer.receive(UInt64.self, timeout: .seconds(1))
        }
        for i in 0..<1_000 { try round(i) } // warm-up
        let before = cshm_test_thread_allocations()
        for i in 0..<100_000 { try round(i) }
        let allocations = cshm_test_thread_allocations() - before
        #expect(allocations == 0, "steady-state send/receive allocated \(allocations) times")
        // The counter itself works:
        let check = cshm_test_thread_allocations()
        _ = try consumer.tryReceive() ?? Array(repeating: 1, count: 10)
        #expect(cshm_test_thread_allocations() > check)
    }
}

@Suite("Wait strategies")
struct WaitStrategyTests {
    @Test func spinBudgetShrinksWhenIdleAndGrowsWhenBusy() throws {
        let (mapping, _) = try AnonymousSharedMemory.map(size: 4096)
        let parker = Parker(mapping.unsafeBaseAddress)
        var waiter = Waiter(.spinThenPark(SpinPolicy(minimumSpin: .microseconds(2), maximumSpin: .microseconds(64))))
        #expect(waiter.spinBudget == 64_000)
        for _ in 0..<10 { _ = waiter.wait(on: parker, deadline: monotonicNanoseconds() + 200_000, ready: { false }) }
        #expect(waiter.spinBudget == 2_000)
        var n = 0
        _ = waiter.wait(on: parker, deadline: nil, ready: { n += 1; return n > 3 })
        #expect(waiter.spinBudget >= 2_000)
    }

    @Test func everyStrategyHonoursItsDeadline() throws {
        let (mapping, _) = try AnonymousSharedMemory.map(size: 4096)
        let parker = Parker(mapping.unsafeBaseAddress)
        for strategy in [WaitStrategy.busySpin, .yielding, .default, .block] {
            var waiter = Waiter(strategy)
            let start = monotonicNanoseconds()
            let satisfied = waiter.wait(on: parker, deadline: start + 20_000_000, ready: { false })
            #expect(!satisfied)
            let took = monotonicNanoseconds() - start
            #expect(took >= 20_000_000 && took < 2_000_000_000, "\(strategy) took \(took) ns")
        }
    }
}
