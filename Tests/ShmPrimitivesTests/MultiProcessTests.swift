#if canImport(Glibc)
import Glibc
#endif
import Testing
import ShmTestSupport
@testable import Shm
@testable import ShmPrimitives
@testable import ShmSystem

/// Waits for a peer and expects it to exit 0, showing its stderr otherwise.
func expectSuccess(_ peer: ChildProcess, timeout: Duration = .seconds(120), _ comment: String = "") throws {
    let status = try peer.wait(timeout: timeout)
    #expect(status == .exited(0), "\(comment) \(peer.errorText)")
}

@Suite("Rings and queues across processes", .serialized)
struct RingProcessTests {
    @Test(arguments: [("default", 2_000_000), ("spin", 300_000), ("block", 100_000)])
    func millionsOfMessagesArriveInOrderAndIntact(strategy: String, count: Int) throws {
        let name = TestSupport.uniqueName("ring")
        let ring = try MessageRing.create(name, capacity: 1 << 16)
        let consumer = try TestSupport.spawnPeer(["ring-consume", name, String(count), strategy])
        let producer = try TestSupport.spawnPeer(["ring-produce", name, String(count), strategy])
        try expectSuccess(producer, "producer")
        try expectSuccess(consumer, "consumer")
        #expect(consumer.outputText == "consumed \(count) in order\n")
        #expect(ring.lostRecords == 0)
        #expect(ring.usedBytes == 0)
    }

    @Test func thisProcessConsumesWhatAPeerProduces() throws {
        let name = TestSupport.uniqueName("ring")
        let ring = try MessageRing.create(name, capacity: 4096)
        let consumer = try ring.consumer()
        let producer = try TestSupport.spawnPeer(["ring-produce", name, "20000", "default"])
        var buffer = [UInt8](repeating: 0, count: 256)
        for expected in UInt64(0)..<20_000 {
            let n = try buffer.withUnsafeMutableBytes { try consumer.receive(into: $0, timeout: .seconds(30)) }
            #expect(n == 8 + Int(expected % 200))
            #expect(buffer.withUnsafeBytes { $0.load(as: UInt64.self) } == expected)
        }
        try expectSuccess(producer)
    }

    @Test func aSecondLiveProducerIsRefusedAndADeadOnesRoleIsTakenOver() throws {
        let name = TestSupport.uniqueName("ring")
        let ring = try MessageRing.create(name, capacity: 4096)
        let consumer = try ring.consumer()
        let peer = try TestSupport.spawnPeer(["ring-claim-hang", name])
        #expect(try peer.readLine(timeout: .seconds(20)) == "claimed")
        #expect(throws: QueueError.roleTaken(role: "producer", pid: peer.pid)) { try ring.producer() }
        // Killed mid-claim: the claim was never published.
        peer.kill(SIGKILL)
        _ = try peer.wait(timeout: .seconds(10))
        #expect(try consumer.tryReceive() == nil)
        let producer = try ring.producer()
        try producer.send([1, 2, 3])
        #expect(try consumer.receive(timeout: .seconds(5)) == [1, 2, 3])
        #expect(try consumer.tryReceive() == nil)
    }

    @Test func aConsumerKilledWhileParkedBlocksNobody() throws {
        let name = TestSupport.uniqueName("ring")
        let ring = try MessageRing.create(name, capacity: 1024)
        let producer = try ring.producer()
        let peer = try TestSupport.spawnPeer(["ring-park-hang", name])
        #expect(try peer.readLine(timeout: .seconds(20)) == "parking")
        // Wait until it is really asleep on the futex.
        let deadline = monotonicNanoseconds() + 10_000_000_000
        while ring.dataParker.sleeperCount == 0 && monotonicNanoseconds() < deadline { usleep(1000) }
        #expect(ring.dataParker.sleeperCount == 1)
        peer.kill(SIGKILL)
        _ = try peer.wait(timeout: .seconds(10))
        // The producer carries on until the ring is full, then times out (bounded).
        var sent = 0
        while try producer.trySend(Array(repeating: 1, count: 100)) { sent += 1 }
        #expect(sent > 0)
        #expect(throws: QueueError.timedOut(.milliseconds(100))) {
            try producer.send(Array(repeating: 1, count: 100), timeout: .milliseconds(100))
        }
        // A new consumer takes over where the dead one stopped.
        let consumer = try ring.consumer()
        #expect(ring.dataParker.sleeperCount == 0)
        for _ in 0..<sent { #expect(try consumer.receive(timeout: .seconds(5)).count == 100) }
    }

    @Test func garbageWrittenByAPeerYieldsErrorsNotCrashes() throws {
        let name = TestSupport.uniqueName("ring")
        let ring = try MessageRing.create(name, capacity: 1024)
        let producer = try ring.producer(), consumer = try ring.consumer()
        try producer.send([1, 2, 3])
        // The record's meta word (data + 8) becomes garbage.
        let typeOffset = MessageRing.dataOffset + 8
        let scribble = try TestSupport.runPeer(["scribble", name, String(typeOffset), String(0xffff_ffff_0000_0003 as UInt64)])
        #expect(scribble.status == .exited(0), "\(scribble.error)")
        let error = #expect(throws: QueueError.self) { try consumer.tryReceive() }
        guard case .corruptRecord = error else { Issue.record("got \(String(describing: error))"); return }
        try producer.send([4])
        #expect(try consumer.receive(timeout: .seconds(5)) == [4])
        // A garbage meta word and a garbage tail: every call is an error, none hangs or crashes.
        try producer.send([5])
        let head = Int(ring.head.pointee.load(ordering: .relaxed)) & (ring.capacity - 1)
        _ = try TestSupport.runPeer(["scribble", name, String(MessageRing.dataOffset + head + 8), String(0xbad0_0000_0001 as UInt64)])
        _ = try TestSupport.runPeer(["scribble", name, String(MessageRing.tailOffset), String(UInt64.max - 7)])
        for _ in 0..<3 {
            #expect(throws: QueueError.self) { try consumer.receive(timeout: .milliseconds(20)) }
        }
    }

    @Test func mpmcManyProducersAndConsumersLoseAndDuplicateNothing() throws {
        let name = TestSupport.uniqueName("mpmc")
        let results = TestSupport.uniqueName("results")
        let producers = 3, consumers = 2, perProducer = 400_000
        let queue = try MessageQueue.create(name, capacity: 1024, slotSize: 16)
        let bitmapBytes = (producers * perProducer + 7) / 8
        let shared = try SharedMemorySegment.create(results, size: 8 + consumers * bitmapBytes)
        let consumerPeers = try (0..<consumers).map { c in
            try TestSupport.spawnPeer(["queue-consume", name, results, String(c), String(producers), String(perProducer)])
        }
        let producerPeers = try (0..<producers).map { p in
            try TestSupport.spawnPeer(["queue-produce", name, String(p), String(perProducer)])
        }
        for peer in producerPeers { try expectSuccess(peer, timeout: .seconds(240), "producer") }
        for peer in consumerPeers { try expectSuccess(peer, timeout: .seconds(240), "consumer") }
        // Every message exactly once across all consumers.
        var union = [UInt8](repeating: 0, count: bitmapBytes)
        var total = 0
        for c in 0..<consumers {
            let bitmap = shared.data.read(8 + c * bitmapBytes ..< 8 + (c + 1) * bitmapBytes)
            for i in 0..<bitmapBytes {
                #expect(union[i] & bitmap[i] == 0, "duplicate delivery in byte \(i)")
                union[i] |= bitmap[i]
                total += bitmap[i].nonzeroBitCount
            }
        }
        #expect(total == producers * perProducer)
        #expect(union.allSatisfy { $0 == 0xff })
        let reported = consumerPeers.map { peer in
            Int(peer.outputText.split(whereSeparator: { $0 == " " || $0 == "\n" }).last ?? "") ?? 0
        }
        #expect(reported.reduce(0, +) == total)
        #expect(queue.approximateCount == 0)
    }

    @Test func mpmcProducerKilledMidWriteIsSkippedAndCounted() throws {
        let name = TestSupport.uniqueName("mpmc")
        let queue = try MessageQueue.create(name, capacity: 8, slotSize: 8)
        let peer = try TestSupport.spawnPeer(["queue-claim-hang", name])
        #expect(try peer.readLine(timeout: .seconds(20)) == "claimed")
        try queue.send(value: UInt64(77))
        // The head slot is being written by a live process: nothing to take yet.
        var buffer = [UInt8](repeating: 0, count: 8)
        #expect(try buffer.withUnsafeMutableBytes { try queue.tryReceive(into: $0) } == nil)
        peer.kill(SIGKILL)
        _ = try peer.wait(timeout: .seconds(10))
        #expect(try queue.receive(UInt64.self, timeout: .seconds(5)) == 77)
        #expect(queue.lostToDeadProducers == 1)
        try queue.send(value: UInt64(78))
        #expect(try queue.receive(UInt64.self, timeout: .seconds(5)) == 78)
    }
}

@Suite("Synchronization across processes", .serialized)
struct SyncProcessTests {
    @Test func mutexOwnerKilledWhileHoldingIsReportedToTheNextLocker() throws {
        let name = TestSupport.uniqueName("mutex")
        let shared = try SharedMutex.create(name)
        let peer = try TestSupport.spawnPeer(["mutex-lock-hang", name])
        #expect(try peer.readLine(timeout: .seconds(20)) == "locked acquired")
        #expect(throws: SyncError.timedOut(.milliseconds(100))) { try shared.lock(timeout: .milliseconds(100)) }
        #expect(shared.holderProcess?.pid == peer.pid)
        peer.kill(SIGKILL)
        _ = try peer.wait(timeout: .seconds(10))
        #expect(try shared.lock(timeout: .seconds(5)) == .ownerDied(pid: peer.pid))
        #expect(shared.ownerDeaths == 1)
        try shared.unlock()
        #expect(try shared.lock(timeout: .seconds(5)) == .acquired)
        try shared.unlock()
    }

    @Test func aWaiterAlreadyBlockedWhenTheOwnerDiesGetsTheLock() throws {
        let name = TestSupport.uniqueName("mutex")
        let shared = try SharedMutex.create(name)
        let peer = try TestSupport.spawnPeer(["mutex-lock-hang", name])
        #expect(try peer.readLine(timeout: .seconds(20)) == "locked acquired")
        let result = Locked<String?>(nil)
        let waiter = TestThread {
            do {
                let acquisition = try shared.lock(timeout: .seconds(20))
                try shared.unlock()
                result.set("\(acquisition)")
            } catch { result.set("error \(error)") }
        }
        usleep(200_000) // let it block in FUTEX_LOCK_PI
        peer.kill(SIGKILL)
        _ = try peer.wait(timeout: .seconds(10))
        waiter.join()
        #expect(result.value == "ownerDied(pid: \(peer.pid))")
    }

    @Test func mutexKeepsProcessesMutuallyExclusive() throws {
        let name = TestSupport.uniqueName("mutex")
        let shared = try SharedMutex.create(name)
        let peers = try (0..<3).map { _ in try TestSupport.spawnPeer(["mutex-hammer", name, "20000"]) }
        for peer in peers { try expectSuccess(peer) }
        let data = shared.segment!.data
        #expect(data.load(fromByteOffset: 1024, as: UInt64.self) == 60_000)
        #expect(data.load(fromByteOffset: 1032, as: UInt64.self) == 60_000)
    }

    @Test func semaphoreAndEventAcrossProcesses() throws {
        let semaphoreName = TestSupport.uniqueName("sema"), eventName = TestSupport.uniqueName("event")
        let semaphore = try SharedSemaphore.create(semaphoreName)
        let event = try SharedEvent.create(eventName)
        let taker = try TestSupport.spawnPeer(["semaphore-take", semaphoreName, "1000"])
        let listener = try TestSupport.spawnPeer(["event-wait", eventName])
        #expect(try listener.readLine(timeout: .seconds(20))?.hasPrefix("waiting") == true)
        for _ in 0..<1000 { semaphore.post() }
        try expectSuccess(taker)
        #expect(semaphore.value == 0)
        let deadline = monotonicNanoseconds() + 10_000_000_000
        while event.sleepingWaiters == 0 && monotonicNanoseconds() < deadline { usleep(1000) }
        event.signal()
        try expectSuccess(listener)
        #expect(listener.outputText.contains("signalled"))
    }
}

