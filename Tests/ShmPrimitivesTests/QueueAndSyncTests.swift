#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import Testing
import ShmTestSupport
@testable import ShmPrimitives
@testable import ShmSystem

func makeQueue(capacity: Int, slotSize: Int) throws -> MessageQueue {
    let (mapping, _) = try AnonymousSharedMemory.map(size: MessageQueue.requiredSize(capacity: capacity, slotSize: slotSize))
    return try MessageQueue.initialize(mapping.bytes, capacity: capacity, slotSize: slotSize)
}

@Suite("MPMC queue")
struct MPMCQueueTests {
    @Test func fifoFullAndEmpty() throws {
        let queue = try makeQueue(capacity: 8, slotSize: 16)
        var buffer = [UInt8](repeating: 0, count: 16)
        #expect(try buffer.withUnsafeMutableBytes { try queue.tryReceive(into: $0) } == nil)
        for i in 0..<8 { #expect(try queue.trySend([UInt8(i), 1, 2])) }
        #expect(try !queue.trySend([9]))
        #expect(queue.approximateCount == 8)
        #expect(throws: QueueError.timedOut(.milliseconds(30))) { try queue.send([9], timeout: .milliseconds(30)) }
        for i in 0..<8 { #expect(try queue.receive(timeout: .seconds(1)) == [UInt8(i), 1, 2]) }
        #expect(throws: QueueError.timedOut(.milliseconds(30))) { try queue.receive(timeout: .milliseconds(30)) }
        // Many laps.
        for i in 0..<10_000 {
            try queue.send(value: UInt64(i))
            #expect(try queue.receive(UInt64.self) == UInt64(i))
        }
    }

    @Test func sizesAreChecked() throws {
        let queue = try makeQueue(capacity: 4, slotSize: 8)
        #expect(throws: QueueError.messageTooLarge(size: 9, maximum: 8)) { try queue.trySend(Array(repeating: 0, count: 9)) }
        try queue.send([1, 2, 3, 4, 5, 6, 7, 8])
        var small = [UInt8](repeating: 0, count: 4)
        #expect(throws: QueueError.bufferTooSmall(needed: 8, available: 4)) { try small.withUnsafeMutableBytes { try queue.tryReceive(into: $0) } }
        #expect(try queue.receive() == [1, 2, 3, 4, 5, 6, 7, 8])
        #expect(throws: QueueError.self) { try makeQueue(capacity: 3, slotSize: 8) }
        #expect(throws: QueueError.self) { try makeQueue(capacity: 4, slotSize: 0) }
    }

    @Test func threadsOnBothSidesLoseAndDuplicateNothing() throws {
        // Real threads, not tasks: blocking waits must never occupy the
        // cooperative pool (it has only as many threads as cores).
        let queue = try makeQueue(capacity: 64, slotSize: 8)
        let perProducer = 20_000, producers = 3
        let seen = Locked([Int](repeating: 0, count: producers * perProducer))
        let taken = Locked(0)
        let failures = Locked(0)
        var threads: [TestThread] = []
        for p in 0..<producers {
            threads.append(TestThread {
                for i in 0..<perProducer {
                    do { try queue.send(value: UInt64(p * perProducer + i), timeout: .seconds(30)) }
                    catch { failures.withLock { $0 += 1 } }
                }
            })
        }
        for _ in 0..<2 {
            threads.append(TestThread {
                let deadline = monotonicNanoseconds() + 60_000_000_000
                while monotonicNanoseconds() < deadline {
                    if taken.value >= producers * perProducer { return }
                    guard let value = try? queue.receive(UInt64.self, timeout: .milliseconds(100)) else { continue }
                    seen.withLock { $0[Int(value)] += 1 }
                    taken.withLock { $0 += 1 }
                }
            })
        }
        for thread in threads { thread.join() }
        #expect(failures.value == 0)
        #expect(seen.withLock { $0.allSatisfy { $0 == 1 } })
    }

    @Test func corruptStateWordsAreErrors() throws {
        let queue = try makeQueue(capacity: 4, slotSize: 8)
        try queue.send([1])
        // A lap no legal transition leads to.
        queue.slots.storeBytes(of: MessageQueue.encode(lap: 0x12345, state: MessageQueue.ready, claimant: 1), as: UInt64.self)
        var b = [UInt8](repeating: 0, count: 8)
        #expect(throws: QueueError.self) { try b.withUnsafeMutableBytes { _ = try queue.tryReceive(into: $0) } }
        #expect(throws: QueueError.self) { try queue.receive(timeout: .milliseconds(50)) }
        // All ones: "the previous lap's reader (pid 4194303) is still reading" —
        // that pid is dead, so a blocking call frees the slot and carries on.
        let stuck = try makeQueue(capacity: 4, slotSize: 8)
        stuck.slots.storeBytes(of: UInt64.max, as: UInt64.self)
        #expect(try b.withUnsafeMutableBytes { try stuck.tryReceive(into: $0) } == nil)
        #expect(stuck.recoverAbandonedSlots() == 1)
        try stuck.send([5])
        #expect(try stuck.receive(timeout: .seconds(1)) == [5])
        // A READY slot whose length is impossible costs that slot only.
        let fresh = try makeQueue(capacity: 4, slotSize: 8)
        try fresh.send([1])
        try fresh.send([2])
        fresh.slots.storeBytes(of: UInt32(1000), toByteOffset: 8, as: UInt32.self)
        #expect(throws: QueueError.corruptRecord(offset: 0, reason: "slot length 1000 exceeds slot size 8")) { try fresh.receive(timeout: .seconds(1)) }
        #expect(try fresh.receive(timeout: .seconds(1)) == [2])
        #expect(fresh.corruptSlotCount == 1)
    }
}

func makeRegion(_ size: Int = 4096) throws -> MappedBytes {
    try AnonymousSharedMemory.map(size: size).0.bytes
}

@Suite("Mutex, semaphore and event")
struct SyncPrimitiveTests {
    @Test func mutexBasics() throws {
        let mutex = try SharedMutex.initialize(makeRegion())
        #expect(try mutex.lock(timeout: .seconds(1)) == .acquired)
        #expect(mutex.holderProcess?.pid == getpid())
        #expect(throws: SyncError.wouldDeadlock) { try mutex.lock(timeout: .milliseconds(10)) }
        #expect(throws: SyncError.wouldDeadlock) { try mutex.tryLock() }
        try mutex.unlock()
        #expect(throws: SyncError.self) { try mutex.unlock() }
        #expect(try mutex.tryLock() == .acquired)
        try mutex.unlock()
        let value = try mutex.withLock { 42 }
        #expect(value == 42)
    }

    @Test func mutexExcludesThreadsAndTimesOut() throws {
        let mutex = try SharedMutex.initialize(makeRegion())
        let region = mutex.region
        let threads = (0..<4).map { _ in
            TestThread {
                for _ in 0..<2_000 {
                    guard (try? mutex.lock(timeout: .seconds(30))) != nil else { return }
                    // Non-atomic read-modify-write under the lock.
                    let v = region.load(fromByteOffset: 2048, as: Int.self)
                    region.storeBytes(of: v + 1, toByteOffset: 2048, as: Int.self)
                    try? mutex.unlock()
                }
            }
        }
        for thread in threads { thread.join() }
        #expect(region.load(fromByteOffset: 2048, as: Int.self) == 8_000)
        // Held by another thread: a timed lock times out.
        let held = Locked(false), release = Locked(false)
        let holder = TestThread {
            _ = try? mutex.lock(timeout: .seconds(5))
            held.set(true)
            while !release.value { usleep(1000) }
            try? mutex.unlock()
        }
        while !held.value { usleep(1000) }
        let start = monotonicNanoseconds()
        #expect(throws: SyncError.timedOut(.milliseconds(50))) { try mutex.lock(timeout: .milliseconds(50)) }
        #expect(monotonicNanoseconds() - start >= 40_000_000)
        #expect(try mutex.tryLock() == nil)
        release.set(true)
        holder.join()
        #expect(try mutex.lock(timeout: .seconds(5)) == .acquired)
        try mutex.unlock()
    }

    @Test func semaphoreCountsAndTimesOut() throws {
        let semaphore = try SharedSemaphore.initialize(makeRegion(), initialValue: 2)
        #expect(semaphore.tryWait() && semaphore.tryWait())
        #expect(!semaphore.tryWait())
        #expect(!semaphore.wait(timeout: .milliseconds(20)))
        semaphore.post(3)
        #expect(semaphore.value == 3)
        #expect(semaphore.wait(timeout: .seconds(1)))
        #expect(semaphore.value == 2)
    }

    @Test func eventWaitsForASignal() throws {
        let event = try SharedEvent.initialize(makeRegion())
        let seen = event.sequence
        #expect(event.wait(after: seen, timeout: .milliseconds(20)) == nil)
        event.signal()
        #expect(event.wait(after: seen, timeout: .seconds(1)) == seen &+ 1)
        let blocking = try SharedEvent(attaching: event.region, waitStrategy: .block)
        #expect(blocking.waitStrategy == .block)
        let waiter = TestThread { _ = blocking.wait(after: seen &+ 1, timeout: .seconds(10)) }
        while event.sleepingWaiters == 0 { usleep(1000) }
        event.signal(all: false)
        waiter.join()
        #expect(event.sleepingWaiters == 0)
    }

    /// A handle's wait strategy is its own, and its spin budget learns from
    /// every wait through the handle (a per-call waiter started at the
    /// maximum each time): each wait that has to park halves it.
    @Test func handlesKeepTheirWaitStrategyAndLearn() throws {
        let policy = SpinPolicy(minimumSpin: .microseconds(1), maximumSpin: .microseconds(400))
        let (mapping, _) = try AnonymousSharedMemory.map(size: MessageQueue.requiredSize(capacity: 4, slotSize: 8))
        let queue = try MessageQueue.initialize(mapping.bytes, capacity: 4, slotSize: 8, waitStrategy: .spinThenPark(policy))
        #expect(queue.waitStrategy == .spinThenPark(policy))
        #expect(queue.waiter.spinBudget == 400_000)
        #expect(throws: QueueError.timedOut(.milliseconds(5))) { try queue.receive(timeout: .milliseconds(5)) }
        #expect(queue.waiter.spinBudget == 200_000)
        #expect(throws: QueueError.timedOut(.milliseconds(5))) { try queue.receive(timeout: .milliseconds(5)) }
        #expect(queue.waiter.spinBudget == 100_000)
        // Another handle on the same memory has its own strategy and budget.
        let other = try MessageQueue(attaching: mapping.bytes, waitStrategy: .block)
        #expect(other.waitStrategy == .block && queue.waiter.spinBudget == 100_000)

        let semaphore = try SharedSemaphore.initialize(makeRegion(), waitStrategy: .spinThenPark(policy))
        #expect(!semaphore.wait(timeout: .milliseconds(5)))
        #expect(semaphore.waiter.spinBudget == 200_000)
        let event = try SharedEvent.initialize(makeRegion(), waitStrategy: .spinThenPark(policy))
        #expect(event.wait(after: event.sequence, timeout: .milliseconds(5)) == nil)
        #expect(event.wait(after: event.sequence, timeout: .milliseconds(5)) == nil)
        #expect(event.waiter.spinBudget == 100_000)
    }

    @Test func layoutsAreValidated() throws {
        let region = try makeRegion()
        #expect(throws: SyncError.self) { try SharedMutex(attaching: region) }
        _ = try SharedEvent.initialize(region)
        #expect(throws: SyncError.self) { try SharedSemaphore(attaching: region) }
        #expect(throws: SyncError.self) { try SharedMutex.initialize(region.view(0..<64)) }
    }
}

