#if canImport(Glibc)
import Glibc
#endif
import Testing
import Shm
import ShmLog
import ShmReplay
import ShmTestSupport

@Suite("Replay-then-live", .serialized)
struct ReplayTests {
    /// A publisher (another process) has been publishing for a while and a
    /// recorder (`shm record`, another process) recording; a subscriber that
    /// joins now gets every sample from the first, then live ones, each
    /// exactly once and in order.
    @Test func aLateSubscriberGetsThePastThenLiveWithoutGapOrDuplicate() throws {
        let name = TestSupport.uniqueName("replay"), directory = TestSupport.temporaryPath("recording")
        defer { _ = try? ChildProcess.spawn("/bin/rm", arguments: ["-rf", directory]).wait(timeout: .seconds(30)) }
        let node = try Node(name: "test")
        // Overwrite-oldest, as ps-pub-forever opens it: a recorder that falls a whole buffer
        // behind loses samples by policy, and the recording has the gap. 256 slots at one
        // sample per 500 µs give the recorder 128 ms of slack on a loaded CI machine (16 gave
        // 8 ms, and a release run once lost sample 221 that way).
        let service = try testService(node, name, buffer: 256, history: 0, overflow: .overwriteOldest)
        let recorder = try TestSupport.spawnCLI(["record", name, "--log", directory])
        #expect(try recorder.readLine(timeout: .seconds(20))?.hasPrefix("recording") == true)
        let publisher = try TestSupport.spawnPeer(["ps-pub-forever", name, "5", "500", "0", "256"])
        defer {
            publisher.kill()
            recorder.kill(SIGTERM)
            _ = try? recorder.wait(timeout: .seconds(10))
        }
        // Let the past grow.
        #expect(TestSupport.eventually(.seconds(30)) {
            ((try? Log.open(directory: directory).nextPosition.sequence) ?? 0) > 400
        })
        let replaying = try ReplayingSubscriber(node: node, service: name, recording: directory)
        var expected: UInt64 = 0
        let deadline = monotonicNanoseconds() + 60_000_000_000
        while expected < 1500, monotonicNanoseconds() < deadline {
            let next: ReplayedSample
            do { next = try replaying.receive(timeout: .seconds(1)) } catch ServiceError.timedOut { continue }
            let sample = consume next
            let value = sample.withBytes { $0.loadUnaligned(as: TestSample.self) }
            #expect(value.producer == 5 && value.isValid)
            #expect(value.sequence == expected, "got \(value.sequence), expected \(expected) (from the recording: \(sample.fromRecording))")
            if value.sequence != expected { break }
            expected += 1
        }
        #expect(expected == 1500)
        #expect(replaying.fromRecording >= 400 && replaying.live > 0, "recording \(replaying.fromRecording), live \(replaying.live)")
        #expect(replaying.gaps == 0)
        _ = service
    }

    /// A recording of another payload type is refused by name.
    @Test func aRecordingOfAnotherTypeIsRefused() throws {
        let node = try Node(name: "test")
        let other = TestSupport.uniqueName("other"), mine = TestSupport.uniqueName("mine")
        let directory = TestSupport.temporaryPath("recording")
        defer { _ = try? ChildProcess.spawn("/bin/rm", arguments: ["-rf", directory]).wait(timeout: .seconds(30)) }
        let otherService = try node.publishSubscribe(other, slicesOf: UInt8.self, maxLength: 32)
        let recorder = try ServiceRecorder(node: node, service: other, log: directory)
        _ = try otherService.publisher().send(copyOf: [UInt8](repeating: 7, count: 32))
        #expect(try recorder.poll(timeout: .seconds(1)) == 1)
        let service = try testService(node, mine)
        let replaying = try ReplayingSubscriber(node: node, service: mine, recording: directory)
        #expect(throws: ServiceError.self) { _ = try replaying.receive(timeout: .milliseconds(100)) }
        _ = service
    }

    /// `shm record` and `shm sub --replay` from the command line: the past
    /// comes first, in order.
    @Test func theCommandLineReplaysARecording() throws {
        let node = try Node(name: "test")
        let name = TestSupport.uniqueName("cli"), directory = TestSupport.temporaryPath("recording")
        defer { _ = try? ChildProcess.spawn("/bin/rm", arguments: ["-rf", directory]).wait(timeout: .seconds(30)) }
        let service = try node.publishSubscribe(name, slicesOf: UInt8.self, maxLength: 64,
                                                config: .init(subscriberBufferSize: 64, overflow: .block))
        let recorder = try TestSupport.spawnCLI(["record", name, "--log", directory, "--count", "20"])
        #expect(try recorder.readLine(timeout: .seconds(20))?.hasPrefix("recording") == true)
        let publisher = try service.publisher()
        #expect(TestSupport.eventually(.seconds(10)) { publisher.connectedSubscribers == 1 })
        for i in 0..<20 { _ = try publisher.send(copyOf: Array("sample \(i)".utf8)) }
        #expect(try recorder.wait(timeout: .seconds(20)) == .exited(0))
        #expect(recorder.outputText.contains("recorded 20"))
        let replay = try TestSupport.runCLI(["sub", name, "--replay", directory, "--count", "20", "--timeout", "5s"])
        #expect(replay.status == .exited(0), "\(replay.error)")
        #expect(replay.output.split(separator: "\n").map(String.init) == (0..<20).map { "sample \($0)" })
    }
}
