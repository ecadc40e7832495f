#if canImport(Glibc)
import Glibc
#endif
import Testing
import ShmTestSupport
@testable import Shm
@testable import ShmPrimitives
@testable import ShmSystem

/// Every place that decides whether a process is gone, with the other
/// process in another pid namespace (its pid means nothing here: a small
/// number that names some unrelated process of ours, or none). Alive must
/// stay alive; killed must be reclaimed.
@Suite("Liveness across pid namespaces")
struct PidNamespacePrimitiveTests {
    @Test func aLeaseIsHeldAcrossPidNamespacesAndReleasedAtDeath() throws {
        if TestSupport.skipWithoutPidNamespaces() { return }
        let name = TestSupport.uniqueName("lease")
        let peer = try TestSupport.spawnInNewPidNamespace(TestSupport.peerPath, ["posix-hold", name, "4096"])
        #expect(try peer.readLine(timeout: .seconds(20)) == "ready")
        // The peer's identity as it recorded it: its pid in its namespace, its lease.
        let segment = try SharedMemorySegment.open(name)
        defer { segment.unlinkIfStillLinked() }
        let recorded = segment.info.creator
        #expect(recorded.lease != 0)
        #expect(recorded.liveness == .alive)
        #expect(ProcessIdentity(compact: recorded.compact).liveness == .alive)
        #expect(ProcessIdentity(packed: recorded.packed).liveness == .alive)
        peer.kill(SIGKILL)
        _ = try peer.wait(timeout: .seconds(10))
        #expect(TestSupport.eventually { recorded.liveness == .dead })
        #expect(ProcessIdentity(compact: recorded.compact).liveness == .dead)
    }

    @Test func aRingRoleHeldInAnotherPidNamespaceIsRespectedThenTakenOver() throws {
        if TestSupport.skipWithoutPidNamespaces() { return }
        let name = TestSupport.uniqueName("nsring")
        let ring = try MessageRing.create(name, capacity: 4096)
        let consumer = try ring.consumer()
        let peer = try TestSupport.spawnInNewPidNamespace(TestSupport.peerPath, ["ring-claim-hang", name])
        #expect(try peer.readLine(timeout: .seconds(20)) == "claimed")
        var refused = false
        do { _ = try ring.producer() } catch { if case .roleTaken = error { refused = true } }
        #expect(refused, "a live producer in another pid namespace lost its role")
        peer.kill(SIGKILL)
        _ = try peer.wait(timeout: .seconds(10))
        #expect(TestSupport.eventually { (try? ring.producer()) != nil })
        let producer = try ring.producer()
        try producer.send([4, 5])
        #expect(try consumer.receive(timeout: .seconds(5)) == [4, 5])
    }

    @Test func anMPMCClaimInAnotherPidNamespaceWaitsForItsOwnerThenIsSkipped() throws {
        if TestSupport.skipWithoutPidNamespaces() { return }
        let name = TestSupport.uniqueName("nsmpmc")
        let queue = try MessageQueue.create(name, capacity: 8, slotSize: 8)
        let peer = try TestSupport.spawnInNewPidNamespace(TestSupport.peerPath, ["queue-claim-hang", name])
        #expect(try peer.readLine(timeout: .seconds(20)) == "claimed")
        try queue.send(value: UInt64(77))
        var buffer = [UInt8](repeating: 0, count: 8)
        #expect(queue.recoverAbandonedSlots() == 0, "a live writer in another pid namespace was taken for dead")
        #expect(try buffer.withUnsafeMutableBytes { try queue.tryReceive(into: $0) } == nil)
        peer.kill(SIGKILL)
        _ = try peer.wait(timeout: .seconds(10))
        #expect(try queue.receive(UInt64.self, timeout: .seconds(5)) == 77)
        #expect(queue.lostToDeadProducers == 1)
    }

    @Test func aMutexHeldInAnotherPidNamespaceIsHeldThenReportedDead() throws {
        if TestSupport.skipWithoutPidNamespaces() { return }
        let name = TestSupport.uniqueName("nsmutex")
        let shared = try SharedMutex.create(name)
        let peer = try TestSupport.spawnInNewPidNamespace(TestSupport.peerPath, ["mutex-lock-hang", name])
        #expect(try peer.readLine(timeout: .seconds(20)) == "locked acquired")
        var timedOut = false
        do { _ = try shared.lock(timeout: .milliseconds(200)) } catch { if case .timedOut = error { timedOut = true } }
        #expect(timedOut, "the lock held in another pid namespace was not held here")
        peer.kill(SIGKILL)
        _ = try peer.wait(timeout: .seconds(10))
        var outcome: String = "none"
        do {
            let acquisition = try shared.lock(timeout: .seconds(5))
            if case .ownerDied = acquisition { outcome = "ownerDied" } else { outcome = "acquired" }
            try shared.unlock()
        } catch {
            outcome = "\(error)"
        }
        #expect(outcome == "ownerDied")
    }

    /// Processes of two pid namespaces (and two in each) hammer one mutex:
    /// it must still exclude (the mixed mode never hands the kernel a TID
    /// from another namespace).
    @Test func aMutexUsedFromTwoPidNamespacesStillExcludes() throws {
        if TestSupport.skipWithoutPidNamespaces() { return }
        let name = TestSupport.uniqueName("nshammer")
        let shared = try SharedMutex.create(name)
        let peers = try [TestSupport.spawnInNewPidNamespace(TestSupport.peerPath, ["mutex-hammer", name, "5000"]),
                         TestSupport.spawnInNewPidNamespace(TestSupport.peerPath, ["mutex-hammer", name, "5000"]),
                         TestSupport.spawnPeer(["mutex-hammer", name, "5000"]),
                         TestSupport.spawnPeer(["mutex-hammer", name, "5000"])]
        for peer in peers {
            let status = try peer.wait(timeout: .seconds(120))
            #expect(status == .exited(0), "\(peer.errorText)")
        }
        let data = shared.segment!.data
        #expect(data.load(fromByteOffset: 1024, as: UInt64.self) == 20_000)
        #expect(data.load(fromByteOffset: 1032, as: UInt64.self) == 20_000)
    }

}
