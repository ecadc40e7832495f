#if canImport(Glibc)
import Glibc
#endif
import Testing
import Shm
import ShmTestSupport
@testable import ShmBridge

/// Two machines on one: the test process is host A; an `IsolatedHost` (its
/// own tmpfs at /dev/shm in a mount namespace) is host B; a `nats-server`
/// on loopback is between them; `shm bridge` runs on each side.
@Suite("NATS bridge between two hosts", .serialized)
struct BridgeProcessTests {
    /// Publisher on A, subscriber on B: every frame, in order, intact, none
    /// lost under `block` — 1 KiB frames, and 6 MB frames that travel in
    /// parts (the server's max_payload is 1 MiB).
    /// Batching is on by default (samples waiting together share NATS
    /// messages); the 64 B run also goes once with `--no-batch`.
    @Test(arguments: [(1024, 400, true), (6_220_800, 8, true), (64, 3000, true), (64, 3000, false)])
    func framesFromHostAReachHostBInOrder(bytes: Int, count: Int, batch: Bool) throws {
        guard let server = try NatsServerProcess.start(), let hostB = try IsolatedHost.make() else { return }
        let name = TestSupport.uniqueName("frames")
        let importer = try BridgeProcess(try hostB.spawn(TestSupport.cliPath, ["bridge", "--url", server.url, "--import", name]))
        let subscriber = try hostB.spawn(TestSupport.peerPath, ["frames-sub", name, String(count), String(bytes)])
        #expect(try subscriber.readLine(timeout: .seconds(30)) == "subscribed")
        // On A: the service first, then the exporting bridge, then the publisher once the bridge subscribed.
        let node = try Node(name: "test-a")
        let service = try node.publishSubscribe(name, slicesOf: UInt8.self, maxLength: bytes,
                                                config: .init(maxPublishers: 8, maxSubscribers: 8, subscriberBufferSize: 8,
                                                              historySize: 0, maxLoans: 4, maxBorrowed: 4, overflow: .block))
        let exporter = try BridgeProcess(try TestSupport.spawnCLI(["bridge", "--url", server.url, "--export", name]
                                                                  + (batch ? [] : ["--no-batch"])))
        #expect(TestSupport.eventually(.seconds(20)) { service.ports.contains { $0.kind == "subscriber" } })
        let publisher = try TestSupport.spawnPeer(["frames-pub", name, String(count), String(bytes)])
        #expect(try publisher.wait(timeout: .seconds(120)) == .exited(0), "\(publisher.errorText)")
        #expect(try subscriber.wait(timeout: .seconds(120)) == .exited(0), "\(subscriber.errorText)")
        #expect(subscriber.outputText.contains("received \(count), \(count) intact, 0 lost"), "\(subscriber.outputText)")
        // The exporting bridge's counters, seen from another process (published every second).
        #expect(try TestSupport.eventually(.seconds(10)) {
            let shown = try TestSupport.runCLI(["service", name])
            return shown.output.contains("bridged to NATS") && shown.output.contains("out=\(count) ")
        })
        let listed = try TestSupport.runCLI(["bridge", "--stats", "--json"])
        #expect(listed.status == .exited(0) && listed.output.contains("\"service\":\"\(name)\""), "\(listed.output)")
        let a = try exporter.stop(), b = try importer.stop()
        #expect(a[name]?["out"] == UInt64(count) && a[name]?["send_failures"] == 0, "\(a)")
        #expect(b[name]?["in"] == UInt64(count), "\(b)")
        for counter in ["type_mismatches", "malformed", "incomplete", "duplicates", "local_drops"] {
            #expect(b[name]?[counter] == 0, "\(counter): \(b)")
        }
    }

    /// The same service exported and imported on both hosts: samples
    /// published on A reach B once, and nothing comes back to A.
    @Test func bothWaysWithoutLoops() throws {
        guard let server = try NatsServerProcess.start(), let hostB = try IsolatedHost.make() else { return }
        let name = TestSupport.uniqueName("both")
        let count = 200
        let bridgeB = try BridgeProcess(try hostB.spawn(TestSupport.cliPath,
                                                        ["bridge", "--url", server.url, "--export", name, "--import", name]))
        let subscriberB = try hostB.spawn(TestSupport.peerPath, ["frames-sub", name, String(count), "64"])
        #expect(try subscriberB.readLine(timeout: .seconds(30)) == "subscribed")
        let subscriberA = try TestSupport.spawnPeer(["frames-sub", name, String(count), "64"])
        #expect(try subscriberA.readLine(timeout: .seconds(30)) == "subscribed")
        let bridgeA = try BridgeProcess(try TestSupport.spawnCLI(["bridge", "--url", server.url, "--export", name, "--import", name]))
        let node = try Node(name: "test-a")
        let service = try node.openAnyPublishSubscribe(name)
        #expect(TestSupport.eventually(.seconds(20)) { service.ports.filter { $0.kind == "subscriber" }.count == 2 })
        // B's bridge must have attached to B's service too before anything arrives there.
        usleep(1_500_000)
        let publisher = try TestSupport.spawnPeer(["frames-pub", name, String(count), "64"])
        #expect(try publisher.wait(timeout: .seconds(60)) == .exited(0), "\(publisher.errorText)")
        #expect(try subscriberA.wait(timeout: .seconds(60)) == .exited(0))
        #expect(try subscriberB.wait(timeout: .seconds(60)) == .exited(0))
        #expect(subscriberA.outputText.contains("received \(count), \(count) intact, 0 lost"), "\(subscriberA.outputText)")
        #expect(subscriberB.outputText.contains("received \(count), \(count) intact, 0 lost"), "\(subscriberB.outputText)")
        usleep(500_000) // anything echoing would have come back by now
        let a = try bridgeA.stop(), b = try bridgeB.stop()
        #expect(a[name]?["out"] == UInt64(count) && a[name]?["in"] == 0, "A: \(a)")
        #expect(b[name]?["in"] == UInt64(count) && b[name]?["out"] == 0, "B: \(b)")
        #expect(b[name]?["loops_skipped"] == UInt64(count), "B: \(b)")
    }

    /// A remote service of another payload type: counted and refused, and
    /// the local subscriber sees nothing.
    @Test func aTypeMismatchIsCountedNeverDelivered() throws {
        guard let server = try NatsServerProcess.start(), let hostB = try IsolatedHost.make() else { return }
        let name = TestSupport.uniqueName("mismatch")
        let importer = try BridgeProcess(try hostB.spawn(TestSupport.cliPath, ["bridge", "--url", server.url, "--import", name]))
        // On B the service carries 32-byte slices; A's carries 64.
        let subscriberB = try hostB.spawn(TestSupport.peerPath, ["frames-sub", name, "1", "32"])
        #expect(try subscriberB.readLine(timeout: .seconds(30)) == "subscribed")
        let exporter = try BridgeProcess(try TestSupport.spawnCLI(["bridge", "--url", server.url, "--export", name]))
        let publisher = try TestSupport.spawnPeer(["frames-pub", name, "20", "64"])
        #expect(try publisher.wait(timeout: .seconds(60)) == .exited(0), "\(publisher.errorText)")
        usleep(1_000_000) // what B would receive has arrived by now
        let a = try exporter.stop(), b = try importer.stop()
        subscriberB.kill()
        _ = try subscriberB.wait(timeout: .seconds(10))
        #expect(!subscriberB.outputText.contains("received"))
        #expect(a[name]?["out"] == 20, "A: \(a)")
        #expect(b[name]?["type_mismatches"] == 20 && b[name]?["in"] == 0, "B: \(b)")
        #expect(importer.process.errorText.contains("remote samples carry"), "\(importer.process.errorText)")
    }

    /// The NATS server restarted mid-stream: the bridges reconnect on their
    /// own and delivery goes on, in order and without duplicates.
    @Test func deliveryResumesAfterTheServerRestarts() throws {
        guard let server = try NatsServerProcess.start(), let hostB = try IsolatedHost.make() else { return }
        let name = TestSupport.uniqueName("restart")
        // Publisher on B (every 2 ms), subscriber here on A.
        let node = try Node(name: "test-a")
        let service = try testService(node, name, buffer: 16, history: 0, overflow: .overwriteOldest)
        let subscriber = try service.subscriber()
        let importer = try BridgeProcess(try TestSupport.spawnCLI(["bridge", "--url", server.url, "--import", name]))
        let exporter = try BridgeProcess(try hostB.spawn(TestSupport.cliPath, ["bridge", "--url", server.url, "--export", name]))
        let publisher = try hostB.spawn(TestSupport.peerPath, ["ps-pub-forever", name, "7", "2000", "0"])
        defer { publisher.kill() }
        var last: UInt64?
        var received = 0
        func receive(until count: Int) throws {
            let deadline = monotonicNanoseconds() + 30_000_000_000
            while received < count, monotonicNanoseconds() < deadline {
                guard let sample = try? subscriber.receive(timeout: .milliseconds(200)) else { continue }
                let value = sample.payload
                #expect(value.producer == 7 && value.isValid)
                if let last { #expect(value.sequence > last, "sequence \(value.sequence) after \(last)") }
                last = value.sequence
                received += 1
            }
        }
        try receive(until: 100)
        #expect(received == 100)
        server.stop()
        usleep(1_000_000)
        #expect(try server.launch())
        let before = received
        try receive(until: before + 200)
        #expect(received == before + 200, "delivery did not resume after the restart")
        let a = try importer.stop(), b = try exporter.stop()
        #expect(a[name]?["duplicates"] == 0 && a[name]?["malformed"] == 0, "A: \(a)")
        #expect((b[name]?["out"] ?? 0) >= UInt64(received), "B: \(b)")
    }

    /// A bridge killed with SIGKILL and started again: delivery resumes; the
    /// subscriber port it left on the exporting host is reclaimed.
    @Test func aKilledBridgeIsReplaced() throws {
        guard let server = try NatsServerProcess.start(), let hostB = try IsolatedHost.make() else { return }
        let name = TestSupport.uniqueName("killed")
        let node = try Node(name: "test-a")
        let service = try testService(node, name, buffer: 16, history: 0, overflow: .overwriteOldest)
        let subscriber = try service.subscriber()
        let importer = try BridgeProcess(try TestSupport.spawnCLI(["bridge", "--url", server.url, "--import", name]))
        let exporter = try BridgeProcess(try hostB.spawn(TestSupport.cliPath, ["bridge", "--url", server.url, "--export", name]))
        let publisher = try hostB.spawn(TestSupport.peerPath, ["ps-pub-forever", name, "3", "2000", "0"])
        defer { publisher.kill() }
        func receive(_ count: Int) -> Int {
            var got = 0
            let deadline = monotonicNanoseconds() + 30_000_000_000
            while got < count, monotonicNanoseconds() < deadline {
                if (try? subscriber.receive(timeout: .milliseconds(200))) != nil { got += 1 }
            }
            return got
        }
        #expect(receive(50) == 50)
        exporter.process.kill()
        _ = try exporter.process.wait(timeout: .seconds(10))
        let replacement = try BridgeProcess(try hostB.spawn(TestSupport.cliPath, ["bridge", "--url", server.url, "--export", name]))
        while (try? subscriber.tryReceive()) != nil {} // what was in flight
        #expect(receive(50) == 50, "delivery did not resume with the new bridge")
        _ = try replacement.stop()
        _ = try importer.stop()
    }
}

/// One bridge per machine per service: two bridges sharing a `/dev/shm`
/// export a service once, and the second takes it over when the first dies.
@Suite("One bridge per machine per service")
struct BridgeClaimTests {
    @Test func twoBridgesOnOneMachineExportAServiceOnceAndTheSecondTakesOver() throws {
        guard let server = try NatsServerProcess.start(), let hostB = try IsolatedHost.make() else { return }
        let name = TestSupport.uniqueName("claimed")
        let node = try Node(name: "test-a")
        let service = try testService(node, name, buffer: 64, history: 0, overflow: .overwriteOldest)
        let subscriber = try service.subscriber()
        let importer = try BridgeProcess(try TestSupport.spawnCLI(["bridge", "--url", server.url, "--import", name]))
        let publisher = try hostB.spawn(TestSupport.peerPath, ["ps-pub-forever", name, "3", "2000", "0"])
        defer { publisher.kill() }
        #expect(try publisher.readLine(timeout: .seconds(20))?.hasPrefix("publisher ") == true)
        let first = try BridgeProcess(try hostB.spawn(TestSupport.cliPath, ["bridge", "--url", server.url, "--export", name]))
        sleepNanoseconds(1_500_000_000) // its discovery takes the service's claim
        let second = try BridgeProcess(try hostB.spawn(TestSupport.cliPath, ["bridge", "--url", server.url, "--export", name]))
        func receive(_ count: Int) -> [UInt64] {
            var sequences: [UInt64] = []
            let deadline = monotonicNanoseconds() + 30_000_000_000
            while sequences.count < count, monotonicNanoseconds() < deadline {
                if let sample = try? subscriber.receive(timeout: .milliseconds(200)) { sequences.append(sample.payload.sequence) }
            }
            return sequences
        }
        let before = receive(100)
        #expect(before.count == 100 && before == before.sorted() && Set(before).count == before.count, "\(before)")
        // The first dies: the second takes the service over at its next look.
        first.process.kill()
        _ = try first.process.wait(timeout: .seconds(10))
        while (try? subscriber.tryReceive()) != nil {}
        let after = receive(50)
        #expect(after.count == 50, "the second bridge did not take over")
        let secondCounters = try second.stop()
        let importerCounters = try importer.stop()
        // Only the second bridge sent anything after the takeover; while both ran it stood by
        // (with both exporting, the importer sees every sample twice and counts duplicates).
        #expect((secondCounters[name]?["out"] ?? 0) > 0, "\(secondCounters)")
        #expect((importerCounters[name]?["duplicates"] ?? 0) == 0, "importer: \(importerCounters)")
        #expect(second.process.errorText.contains("bridged by another bridge on this machine") || second.process.outputText.contains("bridged by another bridge on this machine"),
                "\(second.process.outputText) \(second.process.errorText)")
    }
}
