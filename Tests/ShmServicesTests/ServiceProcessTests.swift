#if canImport(Glibc)
import Glibc
#endif
import Testing
import ShmTestSupport
@testable import Shm

func expectSuccess(_ peer: ChildProcess, timeout: Duration = .seconds(120), _ comment: String = "") throws {
    let status = try peer.wait(timeout: timeout)
    #expect(status == .exited(0), "\(comment) \(peer.errorText)")
}

/// Waits (bounded) for `condition`.
func eventually(_ timeout: Duration = .seconds(20), _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = monotonicNanoseconds() + timeout.nanoseconds
    while monotonicNanoseconds() < deadline {
        if try condition() { return true }
        usleep(5000)
    }
    return try condition()
}

/// Sends one sample; returns the error instead of throwing it.
func send(_ publisher: Publisher<TestSample>, _ sequence: UInt64) -> ServiceError? {
    do {
        let sample = try publisher.loanUninitialized()
        try sample.write(TestSample(producer: 0, sequence: sequence)).send()
        return nil
    } catch {
        return error
    }
}

@Suite("Services across processes", .serialized)
struct ServiceProcessTests {
    @Test func manyPublishersToManySubscribersInOrder() throws {
        let name = TestSupport.uniqueName("nm")
        let node = try Node(name: "test")
        let service = try testService(node, name) // keeps the service alive for the peers
        let perPublisher = 5_000
        let subscribers = try (0..<3).map { _ in try TestSupport.spawnPeer(["ps-sub", name, String(2 * perPublisher), "2"]) }
        for peer in subscribers { #expect(try peer.readLine(timeout: .seconds(20)) == "subscribed") }
        let publishers = try (0..<2).map { p in try TestSupport.spawnPeer(["ps-pub", name, String(p), String(perPublisher), "3"]) }
        for peer in subscribers { try expectSuccess(peer, "subscriber") }
        for peer in publishers { try expectSuccess(peer, "publisher") }
        for peer in subscribers { #expect(peer.outputText.contains("received \(2 * perPublisher) in order from 2 publishers")) }
        _ = service
    }

    /// A publisher in another process sent 20 samples with a history of 4
    /// before we subscribed: we get exactly samples 16…19, and nothing else
    /// (no history: nothing arrives; a wrong one: other numbers).
    @Test func lateJoinerGetsHistoryFromAnotherProcess() throws {
        let name = TestSupport.uniqueName("hist")
        let node = try Node(name: "test")
        let service = try testService(node, name, buffer: 16, history: 4, overflow: .overwriteOldest)
        let publisher = try TestSupport.spawnPeer(["ps-pub-history", name, "20", "4"])
        #expect(try publisher.readLine(timeout: .seconds(20)) == "sent")
        let subscriber = try service.subscriber()
        #expect(try publisher.readLine(timeout: .seconds(20)) == "replayed")
        try expectSuccess(publisher)
        var got: [UInt64] = []
        while let sample = try subscriber.tryReceive() {
            #expect(sample.payload.isValid)
            got.append(sample.payload.sequence)
        }
        #expect(got == [16, 17, 18, 19])
    }

    /// README: dead ports are reclaimed by whichever live port next touches
    /// the table. A publisher killed in a one-publisher service: the next
    /// publisher's registration takes its slot and removes its pool.
    @Test func theNextLivePortReclaimsADeadPublisher() throws {
        try TestSupport.aroundDeadPeers {
            let name = TestSupport.uniqueName("nextlive")
            let node = try Node(name: "test")
            let service = try testService(node, name, buffer: 16, overflow: .overwriteOldest) // as ps-pub-forever opens it
            let subscriber = try service.subscriber()
            let dead = try (0..<4).map { i in try TestSupport.spawnPeer(["ps-pub-forever", name, String(i), "1000", "0"]) }
            for peer in dead { #expect(try peer.readLine(timeout: .seconds(20))?.hasPrefix("publisher") == true) }
            for peer in dead { peer.kill(SIGKILL); _ = try peer.wait(timeout: .seconds(10)) }
            #expect(SegmentDirectory.list().filter { $0.name.name.hasPrefix("svc.\(name).p") }.count == 4)
            // The table is full of dead publishers: registering reclaims them.
            let publisher = try service.publisher()
            #expect(try ServiceDirectory.inspect(name).ports.filter { $0.kind == "publisher" }.count == 1)
            func otherPools() -> Int {
                SegmentDirectory.list().filter {
                    $0.name.name.hasPrefix("svc.\(name).p") && $0.name.name != "svc.\(name).p\(String(publisher.portID, radix: 16))"
                }.count
            }
            // What they had delivered stays receivable until read; then their pools go.
            #expect(otherPools() == 4)
            var stale = 0
            while let sample = try subscriber.tryReceive() {
                #expect(sample.payload.isValid && sample.payload.producer < 4)
                stale += 1
            }
            #expect(stale > 0)
            _ = try subscriber.tryReceive() // recycles the drained blocks
            #expect(otherPools() == 0)
            try publisher.send(copyOf: TestSample(producer: 9, sequence: 1))
            #expect(try subscriber.receive(timeout: .seconds(10)).payload.producer == 9)
        }
    }

    @Test func samplesSentJustBeforeThePublisherLeavesStillArrive() throws {
        let name = TestSupport.uniqueName("burst")
        let node = try Node(name: "test")
        let service = try testService(node, name)
        let subscriber = try service.subscriber()
        let peer = try TestSupport.spawnPeer(["ps-pub-burst", name, "10"])
        #expect(try peer.readLine(timeout: .seconds(20)) == "sent")
        usleep(50_000) // not receiving yet: the pool waits for us
        var got: [UInt64] = []
        while got.count < 10 { got.append(try subscriber.receive(timeout: .seconds(10)).payload.sequence) }
        #expect(got == Array(0..<10))
        try expectSuccess(peer, timeout: .seconds(20))
        #expect(!SegmentDirectory.list().contains { $0.name.name.hasPrefix("svc.\(name).p") })
    }

    /// A publisher process that sends and exits before the subscriber has
    /// mapped its pool: the samples wait for the subscriber, also through a
    /// global cleanup after the publisher's process is gone, and the pool's
    /// name goes once they have been received.
    /// Publishers and subscribers in one process, written as a program
    /// (the peer), built like the tests — in release on the release CI run,
    /// where the publishers are released right after their last send.
    @Test func oneProcessProgramReceivesEverySample() throws {
        let result = try TestSupport.runPeer(["ps-one-process", TestSupport.uniqueName("oneproc"), "3", "4", "20"])
        #expect(result.status == .exited(0), "\(result.error)")
        #expect(result.output.split(separator: "\n").last == "received 240 of 240, 0 damaged", "\(result.output)")
    }

    @Test func samplesOfAPublisherThatExitedWaitForTheSubscriber() throws {
        try TestSupport.aroundDeadPeers {
            let name = TestSupport.uniqueName("await")
            let node = try Node(name: "test")
            let service = try testService(node, name)
            let subscriber = try service.subscriber()
            let peer = try TestSupport.spawnPeer(["ps-pub-burst", name, "3"])
            #expect(try peer.readLine(timeout: .seconds(20)) == "sent")
            // We have not received anything: the publisher leaves at once (it
            // used to wait for us), and its process exits.
            try expectSuccess(peer, timeout: .seconds(20))
            #expect(SegmentDirectory.list().contains { $0.name.name.hasPrefix("svc.\(name).p") })
            let report = ServiceDirectory.cleanup()
            #expect(!report.orphanSegments.contains { $0.hasPrefix("svc.\(name).p") }, "\(report.orphanSegments)")
            var got: [UInt64] = []
            while got.count < 3 { got.append(try subscriber.receive(timeout: .seconds(10)).payload.sequence) }
            #expect(got == [0, 1, 2])
            #expect(!SegmentDirectory.list().contains { $0.name.name.hasPrefix("svc.\(name).p") })
        }
    }

    @Test(arguments: [OverflowPolicy.overwriteOldest, .discard, .block])
    func overflowPolicyWithAStalledSubscriberInAnotherProcess(policy: OverflowPolicy) throws {
        let name = TestSupport.uniqueName("ovf")
        let node = try Node(name: "test")
        let service = try testService(node, name, buffer: 4, overflow: policy)
        let publisher = try service.publisher()
        publisher.sendTimeout = .milliseconds(20)
        let argument = switch policy { case .overwriteOldest: "overwrite"; case .discard: "discard"; case .block: "block" }
        let expected: [UInt64] = switch policy {
        case .overwriteOldest: [7, 8, 9, 10]
        case .discard: [1, 2, 3, 4]
        case .block: [1, 2, 3, 4, 11, 12]
        }
        let peer = try TestSupport.spawnPeer(["ps-sub-stalled", name, "4", argument, String(expected.count)], pipeStandardInput: true)
        #expect(try peer.readLine(timeout: .seconds(20)) == "subscribed")
        #expect(try publisher.waitForSubscribers(1, timeout: .seconds(20)))
        // Ten samples into a queue of four that nobody drains.
        let start = monotonicNanoseconds()
        let reached = (1...10).map { (try? publisher.send(copyOf: TestSample(producer: 0, sequence: $0))) ?? -1 }
        #expect(reached == (1...10).map { i in i <= 4 || policy == .overwriteOldest ? 1 : 0 })
        if policy == .block {
            // Each of the six blocked sends waited its timeout, then gave up (counted as lost).
            #expect(monotonicNanoseconds() - start >= 6 * 20_000_000)
        }
        try peer.writeToStandardInput(Array("go\n".utf8))
        if policy == .block {
            // Now the subscriber drains: blocked sends go through.
            publisher.sendTimeout = .seconds(20)
            for sequence: UInt64 in [11, 12] {
                #expect(try publisher.send(copyOf: TestSample(producer: 0, sequence: sequence)) == 1)
            }
        }
        try expectSuccess(peer, timeout: .seconds(30))
        #expect(peer.outputText.contains("got \(expected.map(String.init).joined(separator: ",")) lost 6"), "\(peer.outputText)")
    }

    @Test func payloadTypeMismatchFromAnotherProcess() throws {
        let name = TestSupport.uniqueName("mismatch")
        let node = try Node(name: "test")
        let service = try testService(node, name)
        let result = try TestSupport.runPeer(["ps-mismatch", name])
        #expect(result.status == .exited(3))
        #expect(result.error.contains("different configuration"))
        #expect(result.error.contains("payload type: requested swiftshm.tests.Other"))
        _ = service
    }

    @Test func killedPublisherIsDetectedReclaimedAndRestarted() throws {
        try TestSupport.aroundDeadPeers {
            let name = TestSupport.uniqueName("restart")
            let node = try Node(name: "test")
            let service = try testService(node, name, buffer: 16, overflow: .overwriteOldest)
            let subscriber = try service.subscriber()
            let first = try TestSupport.spawnPeer(["ps-pub-forever", name, "1", "1000", "0"])
            #expect(try first.readLine(timeout: .seconds(20))?.hasPrefix("publisher") == true)
            #expect(try subscriber.receive(timeout: .seconds(10)).payload.producer == 1)
            first.kill(SIGKILL)
            _ = try first.wait(timeout: .seconds(10))
            // Detected as dead …
            #expect(try ServiceDirectory.inspect(name).ports.contains { $0.kind == "publisher" && !$0.alive })
            // … reclaimed (slot and pool segment) …
            #expect(service.reclaimDeadPorts() >= 1)
            let info = try ServiceDirectory.inspect(name)
            #expect(!info.ports.contains { $0.kind == "publisher" })
            #expect(!SegmentDirectory.list().contains { $0.name.name.hasPrefix("svc.\(name).p") })
            // … and a new publisher under the same service just works.
            while let stale = try subscriber.tryReceive() { stale.release() } // what the dead one had queued
            let second = try TestSupport.spawnPeer(["ps-pub-forever", name, "2", "1000", "0"])
            #expect(try second.readLine(timeout: .seconds(20))?.hasPrefix("publisher") == true)
            var producer: UInt32 = 0
            #expect(try eventually { producer = try subscriber.receive(timeout: .seconds(10)).payload.producer; return producer == 2 })
            second.kill(SIGKILL)
            _ = try second.wait(timeout: .seconds(10))
        }
    }

    @Test func subscriberThatDiesHoldingSamplesDoesNotLeakThemForever() throws {
        let name = TestSupport.uniqueName("leak")
        let node = try Node(name: "test")
        let service = try testService(node, name, buffer: 16, overflow: .overwriteOldest)
        let publisher = try service.publisher()
        let hostile = try TestSupport.spawnPeer(["ps-leak", name])
        #expect(try hostile.readLine(timeout: .seconds(20)) == "subscribed")
        // It takes every sample and gives none back: the pool runs dry — an error, not a hang.
        var failure: ServiceError?
        let start = monotonicNanoseconds()
        for i in 0..<100_000 {
            failure = send(publisher, UInt64(i))
            if failure != nil { break }
            usleep(100)
        }
        guard case .poolExhausted = failure else { Issue.record("expected poolExhausted, got \(String(describing: failure))"); return }
        #expect(monotonicNanoseconds() - start < 60_000_000_000)
        // Once it is dead, its samples come back.
        hostile.kill(SIGKILL)
        _ = try hostile.wait(timeout: .seconds(10))
        #expect(eventually { send(publisher, 0) == nil })
        #expect(publisher.connectedSubscribers == 0)
    }

    @Test func cleanupRemovesWhatKilledProcessesLeft() throws {
        try TestSupport.aroundDeadPeers {
            let name = TestSupport.uniqueName("cleanup")
            let peer = try TestSupport.spawnPeer(["ps-pub-forever", name, "1", "1000", "0"])
            #expect(try peer.readLine(timeout: .seconds(20))?.hasPrefix("publisher") == true)
            peer.kill(SIGKILL)
            _ = try peer.wait(timeout: .seconds(10))
            #expect(ServiceDirectory.serviceNames().contains(name))
            let report = ServiceDirectory.cleanup()
            #expect(report.removedServices.contains(name))
            #expect(report.deadPorts.contains { $0.hasPrefix(name) })
            // Its node is gone too (any new `Node` also removes dead nodes, so the report may not be the one to say so).
            #expect(!ServiceDirectory.nodes().contains { $0.process.pid == peer.pid })
            #expect(!SegmentDirectory.list().contains { $0.name.name.hasPrefix("svc.\(name)") })
        }
    }
}
