#if canImport(Glibc)
import Glibc
#endif
import Testing
import ShmTestSupport
@testable import Shm

/// What other processes can do to a service: write garbage into every one
/// of its segments, race to create and remove it, publish faster than we
/// read, die with a request pending. Nothing may crash, hang or hand out a
/// sample whose memory is reused while it is read.
@Suite("Hostile peers, races, slow readers")
struct HostileAndRaceTests {
    /// Random bytes over the service layout and port tables, the pools and
    /// the inboxes (their IndexQueues) while a victim process uses them: a
    /// publisher and subscriber, or a client and server (zero-copy).
    @Test(arguments: ["ps-victim", "rr-victim"])
    func garbageInEverySegmentOfAServiceCrashesNobody(victimKind: String) throws {
        let name = TestSupport.uniqueName("hostile")
        let victim = try TestSupport.spawnPeer([victimKind, name, "1500"])
        #expect(try victim.readLine(timeout: .seconds(20)) == "ready")
        var generator = SystemRandomNumberGenerator()
        let deadline = monotonicNanoseconds() + 1_500_000_000
        var scribbles = 0
        while monotonicNanoseconds() < deadline {
            for listing in SegmentDirectory.list() where listing.name.name.hasPrefix("svc.\(name)") {
                let fd = open(SharedMemorySegment.directory + "/" + listing.name.fileName, O_RDWR)
                guard fd >= 0 else { continue }
                // Mostly the data area (tables, queues, chunks), sometimes the header page.
                let offset = Int.random(in: 0..<max(1, listing.size - 8), using: &generator) & ~7
                var word = generator.next() as UInt64
                if Bool.random(using: &generator) { word &= 0xFF } // small values look plausible
                _ = pwrite(fd, &word, 8, off_t(offset))
                close(fd)
                scribbles += 1
            }
            usleep(500)
        }
        let status = try victim.wait(timeout: .seconds(120))
        #expect(status == .exited(0), "after \(scribbles) scribbles: \(victim.errorText)")
        #expect(victim.outputText.contains("survived 1500 rounds"), "\(victim.outputText)")
        #expect(scribbles > 100)
        // What is left is garbage nobody can open (cleanup does not remove a
        // service it cannot read: it might be in use): remove it by name.
        for listing in SegmentDirectory.list() where listing.name.name.hasPrefix("svc.\(name)") {
            try? SharedMemorySegment.unlink(listing.name)
        }
    }

    @Test(arguments: ["segment", "service", "log"])
    func createOpenUnlinkRacesAcrossProcesses(kind: String) throws {
        let name = kind == "log" ? TestSupport.temporaryPath("racelog") : TestSupport.uniqueName("race")
        defer {
            if kind == "log" { removeDirectoryOfFiles(name) }
            if kind == "segment", let segment = try? SegmentName(name) { try? SharedMemorySegment.unlink(segment) }
        }
        let rounds = kind == "log" ? 300 : 150
        let peers = try (0..<3).map { _ in try TestSupport.spawnPeer(["race", kind, name, String(rounds)]) }
        for peer in peers {
            let status = try peer.wait(timeout: .seconds(120))
            #expect(status == .exited(0), "\(kind): \(peer.errorText)")
            #expect(peer.outputText.contains("raced \(rounds) rounds"))
        }
        if kind == "log" {
            let verify = try TestSupport.runCLI(["log", "verify", name])
            #expect(verify.status == .exited(0), "\(verify.output)")
            #expect(verify.output.hasPrefix("\(3 * rounds) records intact"), "\(verify.output)")
        }
        if kind == "service" { #expect(!ServiceDirectory.serviceNames().contains(name)) }
    }

    /// A publisher in another process sends as fast as it can into a queue
    /// of 8; we read slowly, holding two samples at a time and reading each
    /// twice, 50 µs apart: a chunk reused while we hold it changes under us.
    @Test(arguments: ["overwrite", "discard", "block"])
    func aFastPublisherAndASlowSubscriberUnderEachPolicy(policy: String) throws {
        let name = TestSupport.uniqueName("slow")
        let node = try Node(name: "test")
        let overflow: OverflowPolicy = policy == "overwrite" ? .overwriteOldest : policy == "discard" ? .discard : .block
        let service = try testService(node, name, buffer: 8, overflow: overflow)
        let subscriber = try service.subscriber()
        let count: UInt64 = 3000
        let publisher = try TestSupport.spawnPeer(["ps-pub-fast", name, String(count), policy])
        var received: [UInt64] = []
        var changedUnderUs = 0, damaged = 0
        var held: ReceivedSample<TestSample>?
        let deadline = monotonicNanoseconds() + 60_000_000_000
        while monotonicNanoseconds() < deadline {
            guard let sample = try? subscriber.receive(timeout: .milliseconds(500)) else {
                if received.last == count - 1 || publisher.outputText.contains("sent") || (try? publisher.wait(timeout: .zero)) != nil { break }
                continue
            }
            let first = sample.payload
            usleep(50)
            if sample.payload != first { changedUnderUs += 1 }
            if !first.isValid { damaged += 1 }
            received.append(first.sequence)
            held = consume sample // hold it while reading the next one
            _ = held
        }
        held = nil
        #expect(try publisher.wait(timeout: .seconds(60)) == .exited(0), "\(publisher.errorText)")
        while let sample = try subscriber.tryReceive() { received.append(sample.payload.sequence) }
        #expect(changedUnderUs == 0 && damaged == 0)
        #expect(received == received.sorted() && Set(received).count == received.count, "out of order or repeated")
        #expect(UInt64(received.count) + subscriber.lostSamples == count, "\(received.count) + \(subscriber.lostSamples) lost")
        if overflow == .block { #expect(received == Array(0..<count)) }
        else { #expect(subscriber.lostSamples > 0, "a slow reader of a fast \(policy) publisher lost nothing?") }
    }

    /// A client killed with a request pending: the server's answer to it is
    /// harmless, the dead client's response queue is reclaimed, and other
    /// clients are served as before.
    @Test func aKilledClientWithARequestPending() throws {
        try TestSupport.aroundDeadPeers {
            let name = TestSupport.uniqueName("deadclient")
            let node = try Node(name: "test")
            let service = try node.requestResponse(name, request: AddRequest.self, response: AddResponse.self,
                                                   typeName: "swiftshm.tests.Add", config: .init(maxClients: 8, maxServers: 2, queueDepth: 16))
            let server = try service.server()
            let client = try TestSupport.spawnPeer(["rr-client-hang", name])
            #expect(try client.readLine(timeout: .seconds(20)) == "sent")
            let active = try server.receive(timeout: .seconds(10))
            #expect(active.request.left == 41)
            client.kill(SIGKILL)
            _ = try client.wait(timeout: .seconds(10))
            _ = try? active.respond(AddResponse(sum: 42, part: 0), final: true) // to a dead client: no crash, no hang
            #expect(service.attachment.reclaimDeadPorts() >= 1)
            // Its pool and inbox are gone with it.
            let clientSegments = ["p", "s"].map { "svc.\(name).\($0)\(String(active.clientID, radix: 16))" }
            #expect(!SegmentDirectory.list().contains { clientSegments.contains($0.name.name) })
            let other = try TestSupport.spawnPeer(["rr-client", name, "5"])
            for _ in 0..<5 {
                let next = try server.receive(timeout: .seconds(10))
                try next.respond(AddResponse(sum: next.request.left + next.request.right, part: 0), final: true)
            }
            #expect(try other.wait(timeout: .seconds(20)) == .exited(0), "\(other.errorText)")
        }
    }
}
