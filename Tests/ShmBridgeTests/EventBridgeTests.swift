#if canImport(Glibc)
import Glibc
#endif
import Testing
import Shm
import ShmTestSupport

@Suite("NATS bridge: events between two hosts", .serialized)
struct EventBridgeTests {
    /// A notifier on host B, a listener here: the id arrives.
    @Test func anEventNotifiedOnAnotherHostWakesAListenerHere() throws {
        guard let server = try NatsServerProcess.start(), let hostB = try IsolatedHost.make() else { return }
        let name = TestSupport.uniqueName("ev")
        let localListenerB = try hostB.spawn(TestSupport.peerPath, ["ev-listen", name, "5"]) // creates the service on B
        #expect(try localListenerB.readLine(timeout: .seconds(30)) == "listening")
        let exporter = try BridgeProcess(try hostB.spawn(TestSupport.cliPath, ["bridge", "--url", server.url, "--export", name]))
        let node = try Node(name: "test-a")
        let listener = try node.event(name, config: .init(maxEventID: 15)).listener()
        let importer = try BridgeProcess(try TestSupport.spawnCLI(["bridge", "--url", server.url, "--import", name]))
        usleep(1_500_000) // B's bridge attaches its listener within a second
        let notifier = try hostB.spawn(TestSupport.peerPath, ["ev-notify", name, "5", "50"])
        #expect(firstEvents(listener, within: .seconds(20)) == [EventID(5)])
        #expect(try notifier.wait(timeout: .seconds(30)) == .exited(0))
        #expect(try localListenerB.wait(timeout: .seconds(30)) == .exited(0))
        let a = try importer.stop(), b = try exporter.stop()
        #expect((b[name]?["out"] ?? 0) >= 1 && (a[name]?["in"] ?? 0) >= 1,
                "A: \(a) B: \(b) \(exporter.process.errorText) \(importer.process.errorText)")
        #expect(a[name]?["in"] == b[name]?["out"], "every notification sent arrived: A: \(a) B: \(b)")
    }

    /// The same event service bridged both ways on both hosts: a
    /// notification on B reaches A's listener and is not sent back (the
    /// bridge skips the echo of what it notified itself), so nothing loops.
    @Test func anEventServiceBridgedBothWaysDoesNotLoop() throws {
        guard let server = try NatsServerProcess.start(), let hostB = try IsolatedHost.make() else { return }
        let name = TestSupport.uniqueName("ev2")
        let localListenerB = try hostB.spawn(TestSupport.peerPath, ["ev-listen", name, "5"])
        #expect(try localListenerB.readLine(timeout: .seconds(30)) == "listening")
        let node = try Node(name: "test-a")
        let listener = try node.event(name, config: .init(maxEventID: 15)).listener()
        let bridgeB = try BridgeProcess(try hostB.spawn(TestSupport.cliPath, ["bridge", "--url", server.url, "--export", name, "--import", name]))
        let bridgeA = try BridgeProcess(try TestSupport.spawnCLI(["bridge", "--url", server.url, "--export", name, "--import", name]))
        usleep(1_500_000) // both bridges attach their listeners within a second
        let notifier = try hostB.spawn(TestSupport.peerPath, ["ev-notify", name, "5", "20"])
        #expect(firstEvents(listener, within: .seconds(20)) == [EventID(5)])
        #expect(try notifier.wait(timeout: .seconds(30)) == .exited(0))
        #expect(try localListenerB.wait(timeout: .seconds(30)) == .exited(0))
        usleep(3_000_000) // a loop would keep both bridges busy now
        let a = try bridgeA.stop(), b = try bridgeB.stop()
        let detail = "A: \(a) B: \(b) \(bridgeA.process.errorText) \(bridgeB.process.errorText)"
        #expect((b[name]?["out"] ?? 0) >= 1, "\(detail)")
        #expect(a[name]?["in"] == b[name]?["out"], "\(detail)")
        #expect((a[name]?["out"] ?? 0) == 0, "A sent notifications back: \(detail)")
        #expect((b[name]?["in"] ?? 0) == 0, "\(detail)")
        #expect((a[name]?["loops_skipped"] ?? 0) >= 1, "\(detail)")
    }
}

/// The first ids `listener` sees fire within `limit` (empty if none).
func firstEvents(_ listener: Listener, within limit: Duration) -> [EventID] {
    let deadline = monotonicNanoseconds() + UInt64(limit.components.seconds) * 1_000_000_000
    var seen: [EventID] = []
    while seen.isEmpty, monotonicNanoseconds() < deadline { seen = listener.wait(timeout: .milliseconds(200)) }
    return seen
}
