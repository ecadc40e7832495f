#if canImport(Glibc)
import Glibc
#endif
import Testing
import ShmTestSupport
@testable import Shm
@testable import ShmPrimitives
@testable import ShmSystem

@Suite("Async queues")
struct AsyncTests {
    @Test func asyncSequenceReceivesWhatAPeerProduces() async throws {
        let name = TestSupport.uniqueName("async")
        let ring = try MessageRing.create(name, capacity: 4096)
        let consumer = try ring.consumer(waitStrategy: .block)
        let producer = try TestSupport.spawnPeer(["ring-produce", name, "2000", "block"])
        let reading = Task {
            var expected: UInt64 = 0
            for try await message in consumer.messages {
                #expect(message.count == 8 + Int(expected % 200))
                #expect(message.withUnsafeBytes { $0.load(as: UInt64.self) } == expected)
                expected += 1
                if expected == 2000 { break }
            }
            return expected
        }
        // Bounded: cancelling ends the sequence (a hang would hide the cause).
        let watchdog = Task {
            try await Task.sleep(for: .seconds(150))
            reading.cancel()
        }
        let received = try await reading.value
        watchdog.cancel()
        #expect(received == 2000, "peer: \(producer.errorText)")
        try expectSuccess(producer)
    }

    @Test func waitingReceiversDoNotBlockTheCooperativePool() async throws {
        // More waiters than the cooperative pool has threads (one per core).
        let waiters = CPU.onlineCount * 3
        let rings = try (0..<waiters).map { _ in try makeRing(capacity: 1024) }
        let consumers = try rings.map { try $0.consumer(waitStrategy: .block) }
        let tasks = consumers.map { consumer in
            Task { try await consumer.receive(timeout: .seconds(120)) }
        }
        // Every wait sits on a dedicated pool thread, not on a cooperative one.
        let deadline = monotonicNanoseconds() + 20_000_000_000
        while BlockingPool.shared.threadCount < waiters && monotonicNanoseconds() < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(BlockingPool.shared.threadCount >= waiters)
        // And other work still runs. (The bound is loose: other tests running in
        // parallel may occupy the cooperative pool with their own blocking work.)
        let start = monotonicNanoseconds()
        let sum = await Task.detached { (0..<1000).reduce(0, +) }.value
        #expect(sum == 499_500)
        #expect(monotonicNanoseconds() - start < 60_000_000_000)
        // Deliver to the first half; cancel the rest.
        for ring in rings.prefix(waiters / 2) { try await ring.producer().send([7]) }
        for task in tasks.prefix(waiters / 2) { #expect(try await task.value == [7]) }
        let cancelStart = monotonicNanoseconds()
        for task in tasks.dropFirst(waiters / 2) { task.cancel() }
        for task in tasks.dropFirst(waiters / 2) {
            await #expect(throws: CancellationError.self) { try await task.value }
        }
        // Cancelling wakes the futexes at once; without that the waits would
        // end only at their 120 s timeout. (Loose again: resuming the awaiting
        // tasks needs the cooperative pool, which blocking tests in parallel
        // can hold for seconds on 2 vCPUs — 7 s was seen in CI.)
        #expect(monotonicNanoseconds() - cancelStart < 60_000_000_000)
    }

    @Test func asyncSendWaitsForRoomAndTimesOut() async throws {
        let ring = try makeRing(capacity: 256)
        let producer = try ring.producer(waitStrategy: .block), consumer = try ring.consumer()
        while try producer.trySend(Array(repeating: 1, count: 100)) {}
        await #expect(throws: QueueError.timedOut(.milliseconds(50))) {
            try await producer.send(Array(repeating: 2, count: 100), timeout: .milliseconds(50))
        }
        let sender = Task { try await producer.send(Array(repeating: 3, count: 100), timeout: .seconds(20)) }
        try await Task.sleep(for: .milliseconds(50))
        _ = try await consumer.receive(timeout: .seconds(1)) // frees room
        try await sender.value
        await #expect(throws: QueueError.timedOut(.milliseconds(30))) {
            try await makeRing(capacity: 1024).consumer().receive(timeout: .milliseconds(30))
        }
    }

    @Test func asyncMPMCAcrossTasks() async throws {
        let queue = try makeQueue(capacity: 4, slotSize: 8)
        let reader = Task { try await queue.receive(timeout: .seconds(20)) }
        try await Task.sleep(for: .milliseconds(20))
        try await queue.send([1, 2, 3])
        #expect(try await reader.value == [1, 2, 3])
        for i in 0..<4 { try await queue.send([UInt8(i)]) }
        let writer = Task { try await queue.send([9], timeout: .seconds(20)) }
        try await Task.sleep(for: .milliseconds(20))
        #expect(try await queue.receive() == [0])
        try await writer.value
        let cancelled = Task { try await makeQueue(capacity: 2, slotSize: 8).receive(timeout: .seconds(30)) }
        cancelled.cancel()
        await #expect(throws: CancellationError.self) { try await cancelled.value }
    }
}
