#if canImport(Glibc)
import Glibc
#endif
import Testing
import ShmTestSupport
import Shm
import ShmSystem
import Synchronization

/// Liveness across pid namespaces and pid reuse, with real namespaces
/// (`unshare -p -f --mount-proc`, as root). Processes in different pid
/// namespaces share /dev/shm in containers (`--ipc=host`, pods): a pid
/// proves nothing there, a held lease does.
@Suite("Pid namespaces")
struct PidNamespaceTests {
    /// Runs `shm` with `arguments` in a new pid namespace (it sees only
    /// itself in /proc).
    static func cliInNewPidNamespace(_ arguments: [String]) throws -> (status: ShmSystem.ExitStatus, output: String, error: String) {
        let child = try ChildProcess.spawn("/usr/bin/unshare", arguments: ["-p", "-f", "--mount-proc", TestSupport.cliPath] + arguments,
                                           captureOutput: true)
        let status = try child.wait(timeout: .seconds(30))
        return (status, child.outputText, child.errorText)
    }

    /// The silent data loss of issue #9: `shm cleanup` in another pid
    /// namespace took a live publisher for dead and removed its node, ports
    /// and service. Now nothing of it is touched, delivery goes on; once it
    /// is killed, the same cleanup reclaims everything.
    @Test func cleanupFromAnotherPidNamespaceLeavesLiveProcessesAlone() throws {
        if TestSupport.skipWithoutPidNamespaces() { return }
        try TestSupport.aroundDeadPeers {
            let name = TestSupport.uniqueName("pidns")
            let publisher = try TestSupport.spawnCLI(["pub", name, "--message", "tick", "--count", "1000000", "--interval", "2ms"])
            #expect(TestSupport.eventually { ServiceDirectory.nodes().contains { $0.process.pid == publisher.pid } })

            let cleanup = try PidNamespaceTests.cliInNewPidNamespace(["cleanup", "--json"])
            #expect(cleanup.status == .exited(0), "\(cleanup.error)")
            #expect(!cleanup.output.contains(name), "\(cleanup.output)")
            #expect(ServiceDirectory.serviceNames().contains(name))
            #expect(ServiceDirectory.nodes().filter { $0.process.pid == publisher.pid }.count == 1)
            // `shm service` in the other namespace sees the publisher alive.
            let listing = try PidNamespaceTests.cliInNewPidNamespace(["service", name])
            #expect(listing.status == .exited(0), "\(listing.error)")
            #expect(listing.output.contains("publisher") && !listing.output.contains("dead"), "\(listing.output)")

            // Delivery continues: a new subscriber gets fresh samples.
            let sub = try TestSupport.runCLI(["sub", name, "--count", "2", "--timeout", "10s"])
            #expect(sub.status == .exited(0), "\(sub.error)")
            #expect(sub.output == "tick\ntick\n", "\(sub.output)")

            publisher.kill(SIGKILL)
            _ = try publisher.wait(timeout: .seconds(10))
            let after = try PidNamespaceTests.cliInNewPidNamespace(["cleanup", "--json"])
            #expect(after.status == .exited(0), "\(after.error)")
            #expect(after.output.contains(name), "\(after.output)")
            #expect(!ServiceDirectory.serviceNames().contains(name))
            #expect(!SegmentDirectory.list().contains { $0.name.name.hasPrefix("svc.\(name)") })
            #expect(!ServiceDirectory.nodes().contains { $0.process.pid == publisher.pid })
        }
    }


    /// In a fresh pid namespace a killed `shm sub` leaves its node; the next
    /// process given the same pid (through `ns_last_pid`) must not collide
    /// with it nor be taken for it.
    @Test func aReusedPidIsNotItsPredecessor() throws {
        if TestSupport.skipWithoutPidNamespaces() { return }
        let name = TestSupport.uniqueName("pidreuse")
        let cli = TestSupport.cliPath
        let script = """
        set -u
        "\(cli)" sub \(name) --timeout 20s >/dev/null 2>&1 &
        first=$!
        for _ in $(seq 200); do ls /dev/shm | grep -q "node.shm-sub.$first-" && break; sleep 0.05; done
        kill -9 $first; wait $first 2>/dev/null
        echo $((first - 1)) > /proc/sys/kernel/ns_last_pid
        "\(cli)" sub \(name) --count 1 --timeout 20s > /tmp/\(name).out 2>&1 &
        second=$!
        echo "pids $first $second"
        for _ in $(seq 200); do ls /dev/shm | grep -q "node.shm-sub.$second-" && break; sleep 0.05; done
        "\(cli)" pub \(name) --message hello --wait-subscribers 1 >/dev/null 2>&1
        wait $second; status=$?
        cat /tmp/\(name).out; rm -f /tmp/\(name).out
        echo "second exited $status"
        """
        try TestSupport.aroundDeadPeers {
            let child = try ChildProcess.spawn("/usr/bin/unshare", arguments: ["-p", "-f", "--mount-proc", "/bin/bash", "-c", script],
                                               captureOutput: true)
            let status = try child.wait(timeout: .seconds(60))
            #expect(status == .exited(0), "\(child.errorText)")
            let lines = child.outputText.split(separator: "\n").map(String.init)
            let pids = lines.first { $0.hasPrefix("pids ") }?.split(separator: " ").dropFirst().map(String.init) ?? []
            #expect(pids.count == 2 && pids[0] == pids[1], "the pid was not reused: \(lines)")
            #expect(lines.contains("hello"), "\(lines)")
            #expect(lines.last == "second exited 0", "\(lines)")
            // What the killed one left is reclaimed.
            _ = ServiceDirectory.cleanup()
            #expect(!SegmentDirectory.list().contains { $0.name.name.hasPrefix("svc.\(name)") })
        }
    }
}

/// A process that is starting up is never taken for dead: its lease file
/// exists only once it is locked (made under a hidden name, then renamed).
/// Before, a cleanup or a liveness test in the window between `open` and
/// `flock` saw an unlocked lease — "dead" — and reclaimed the live process's
/// queue claims and ports (a release CI run lost requests that way).
@Suite("Leases of starting processes")
struct StartingLeaseTests {
    @Test func aLeaseIsNeverSeenUnlockedWhileItsProcessLives() throws {
        let stop = Atomic<Bool>(false)
        var seenDead = 0
        let hammers = (0..<2).map { _ in
            TestThread {
                while !stop.load(ordering: .relaxed) {
                    // What cleanups and liveness checks do, as fast as possible.
                    _ = ProcessLease.removeStale()
                }
            }
        }
        var peers: [ChildProcess] = []
        defer {
            stop.store(true, ordering: .relaxed)
            for hammer in hammers { hammer.join() }
            for peer in peers { peer.kill(); _ = try? peer.wait(timeout: .seconds(5)) }
        }
        for _ in 0..<8 {
            let batch = try (0..<6).map { _ in try TestSupport.spawnPeer(["lease"]) }
            peers += batch
            for peer in batch {
                let line = try #require(try peer.readLine(timeout: .seconds(20)))
                let token = try #require(UInt32(line.dropFirst("lease ".count), radix: 16))
                #expect(token != 0, "the peer made no lease")
                if ProcessLease.state(token: token) != .held { seenDead += 1 }
            }
        }
        #expect(seenDead == 0, "live peers whose lease was not held: \(seenDead)")
    }
}
