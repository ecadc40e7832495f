#if canImport(Glibc)
import Glibc
#endif
import Testing
import Shm
import ShmLog
import ShmTestSupport

@Suite("NATS bridge: log replication through JetStream", .serialized)
struct LogReplicationTests {
    /// A log written on host A is mirrored into a stream; a replica on host
    /// B is built from it while a tailer there reads it; the mirroring and
    /// the replicating bridges are each killed with SIGKILL mid-stream and
    /// started again; in the end the replica holds every record with the
    /// same sequence number, timestamp and bytes, and `shm log verify`
    /// passes on it.
    @Test func aReplicaLogIsTheSourceRecordForRecordAfterRestarts() throws {
        guard let server = try NatsServerProcess.start(jetStream: true), let hostB = try IsolatedHost.make() else { return }
        let stream = "orders" + String(UInt32.random(in: 0...UInt32.max), radix: 16)
        let source = TestSupport.temporaryPath("source"), replica = TestSupport.temporaryPath("replica")
        defer { for directory in [source, replica] { _ = try? ChildProcess.spawn("/bin/rm", arguments: ["-rf", directory]).wait(timeout: .seconds(30)) } }
        let count = 20_000
        let writer = try TestSupport.spawnPeer(["log-append", source, "sw", String(count), "none"])
        #expect(try writer.readLine(timeout: .seconds(30)) == "ready")
        let mirrorArguments = ["bridge", "--url", server.url, "--mirror-log", "\(stream)=\(source)"]
        let replicaArguments = ["bridge", "--url", server.url, "--name", "site-b", "--replica-log", "\(stream)=\(replica)"]
        var mirror = try BridgeProcess(try TestSupport.spawnCLI(mirrorArguments))
        var copier = try BridgeProcess(try hostB.spawn(TestSupport.cliPath, replicaArguments))
        // A tailer on the replica, reading while it is written.
        let tailer = try hostB.spawn(TestSupport.peerPath, ["log-tail", replica, String(count)])
        usleep(300_000)
        mirror.process.kill()
        _ = try mirror.process.wait(timeout: .seconds(10))
        mirror = try BridgeProcess(try TestSupport.spawnCLI(mirrorArguments))
        usleep(300_000)
        copier.process.kill()
        _ = try copier.process.wait(timeout: .seconds(10))
        copier = try BridgeProcess(try hostB.spawn(TestSupport.cliPath, replicaArguments))
        #expect(try writer.wait(timeout: .seconds(60)) == .exited(0))
        #expect(try tailer.wait(timeout: .seconds(120)) == .exited(0), "\(tailer.errorText)")
        #expect(tailer.outputText.contains("tailed \(count) sw=\(count - 1)"), "\(tailer.outputText)")

        func content(_ directory: String) throws -> [String] {
            let log = try Log.open(directory: directory)
            let reader = try log.tailer(from: .start)
            var lines: [String] = []
            while let record = try reader.tryNext() { lines.append("\(record.sequence) \(record.timestamp) \(record.text)") }
            return lines
        }
        let original = try content(source)
        #expect(original.count == count)
        #expect(TestSupport.eventually(.seconds(60)) { ((try? content(replica))?.count ?? 0) >= count })
        #expect(try content(replica) == original)
        let verify = try TestSupport.runCLI(["log", "verify", replica])
        #expect(verify.status == .exited(0), "\(verify.output) \(verify.error)")
        let a = try mirror.stop(), b = try copier.stop()
        print("log replication counters after the restarts: mirror \(a), replica \(b)")
        #expect(a["log:\(stream)"]?["send_failures"] == 0, "A: \(a)")
        #expect(b["log:\(stream)"]?["local_drops"] == 0 && b["log:\(stream)"]?["malformed"] == 0, "B: \(b)")
    }
}
