#if canImport(Glibc)
import Glibc
#endif
import Testing
import ShmSystem
import ShmTestSupport
import Shm

/// The CLI says what happened: signals end long-running commands cleanly,
/// a pool that cannot be mapped is named, retention gaps are noticed.
@Suite("shm: say what happened")
struct SayWhatHappenedCLITests {
    /// Files in /dev/shm that belong to `service` or to a node of `pid`.
    func leftovers(service: String, pid: Int32) -> [String] {
        SegmentDirectory.list().map(\.name.name).filter {
            $0.hasPrefix("svc.\(service)") || $0.contains(".\(pid)-")
        }
    }


    @Test(arguments: [SIGINT, SIGTERM, SIGHUP])
    func pubAndSubEndedBySignalsLeaveNothing(signal: Int32) throws {
        let name = TestSupport.uniqueName("sig")
        let publisher = try TestSupport.spawnCLI(["pub", name, "--message", "tick", "--count", "1000000", "--interval", "1ms"])
        let subscriber = try TestSupport.spawnCLI(["sub", name])
        #expect(try subscriber.readLine(timeout: .seconds(20)) == "tick")
        subscriber.kill(signal)
        #expect(try subscriber.wait(timeout: .seconds(10)) == .exited(128 + signal), "\(subscriber.errorText)")
        publisher.kill(signal)
        #expect(try publisher.wait(timeout: .seconds(10)) == .exited(128 + signal), "\(publisher.errorText)")
        #expect(publisher.errorText.contains("published"), "\(publisher.errorText)")
        // Nothing of either is left for `shm cleanup` to find.
        #expect(leftovers(service: name, pid: publisher.pid).isEmpty, "\(leftovers(service: name, pid: publisher.pid))")
        #expect(leftovers(service: name, pid: subscriber.pid).isEmpty)
    }

    @Test func pubReadingStdinEndsOnSignal() throws {
        let name = TestSupport.uniqueName("sigstdin")
        let publisher = try ChildProcess.spawn(TestSupport.cliPath, arguments: ["pub", name], captureOutput: true, pipeStandardInput: true)
        #expect(TestSupport.eventually { ServiceDirectory.serviceNames().contains(name) })
        publisher.kill(SIGTERM)
        #expect(try publisher.wait(timeout: .seconds(10)) == .exited(128 + SIGTERM), "\(publisher.errorText)")
        #expect(leftovers(service: name, pid: publisher.pid).isEmpty)
    }

    @Test func followingTailerEndsOnSignal() throws {
        let directory = TestSupport.temporaryPath("sigtail")
        defer { removeDirectoryOfFiles(directory) }
        _ = try TestSupport.runCLI(["log", "append", directory, "--message", "one"])
        let tailer = try TestSupport.spawnCLI(["log", "tail", directory, "--follow"])
        #expect(try tailer.readLine(timeout: .seconds(20)) == "one")
        tailer.kill(SIGINT)
        #expect(try tailer.wait(timeout: .seconds(10)) == .exited(128 + SIGINT), "\(tailer.errorText)")
        // Its registration as a sleeping tailer went with it: the next
        // appender finds no count to repair.
        let append = try TestSupport.runCLI(["log", "append", directory, "--message", "two", "--verbose"])
        #expect(append.status == .exited(0), "\(append.error)")
    }

    /// A subscriber that cannot map a publisher's pool (here: no address
    /// space, `ulimit -v`, for a 1.1 GB pool reserved up front) used to say
    /// "no sample within 2.0 seconds".
    @Test func aPoolThatCannotBeMappedIsNamed() throws {
        let name = TestSupport.uniqueName("enomem")
        let publisher = try TestSupport.spawnCLI(["pub", name, "--max-length", "1048576", "--pool", "reserved", "--message", "x",
                                                  "--count", "1000000", "--interval", "5ms"])
        defer { publisher.kill(SIGTERM); _ = try? publisher.wait(timeout: .seconds(10)) }
        #expect(TestSupport.eventually { SegmentDirectory.list().contains { $0.name.name.hasPrefix("svc.\(name).p") } })
        let script = "ulimit -v 600000; exec \"\(TestSupport.cliPath)\" sub \(name) --count 1 --timeout 3s"
        let subscriber = try ChildProcess.spawn("/bin/bash", arguments: ["-c", script], captureOutput: true)
        let status = try subscriber.wait(timeout: .seconds(30))
        #expect(status == .exited(1), "\(subscriber.errorText)")
        #expect(subscriber.errorText.contains("svc.\(name).p") && subscriber.errorText.contains("ENOMEM"), "\(subscriber.errorText)")
    }

    /// `shm log tail --follow` behind `shm log trim` used to jump silently.
    /// Two tailers stall on a full stdout pipe early in the log; a trim then
    /// deletes the segments ahead of them.
    @Test func aTailerBehindRetentionSaysSoOrFails() throws {
        let directory = TestSupport.temporaryPath("trimgap")
        defer { removeDirectoryOfFiles(directory) }
        let lines = (0..<200).map { "record \($0) " + String(repeating: "#", count: 2000) }
        let appended = try TestSupport.runCLI(["log", "append", directory, "--segment-size", "64KiB"],
                                              stdin: lines.joined(separator: "\n") + "\n")
        #expect(appended.status == .exited(0), "\(appended.error)")
        let noticing = try TestSupport.spawnCLI(["log", "tail", directory])
        let failing = try TestSupport.spawnCLI(["log", "tail", directory, "--fail-on-gap"])
        #expect(try noticing.readLine(timeout: .seconds(20)) == lines[0])
        #expect(try failing.readLine(timeout: .seconds(20)) == lines[0])
        usleep(300_000) // both fill their pipes and block, a few segments in
        let trim = try TestSupport.runCLI(["log", "trim", directory, "--max-size", "128KiB"])
        #expect(trim.status == .exited(0), "\(trim.error)")
        #expect(try noticing.wait(timeout: .seconds(30)) == .exited(0), "\(noticing.errorText)")
        #expect(noticing.errorText.contains("notice: retention deleted"), "\(noticing.errorText)")
        #expect(noticing.outputText.split(separator: "\n").last.map(String.init) == lines.last)
        #expect(try failing.wait(timeout: .seconds(30)) == .exited(1), "\(failing.errorText)")
        #expect(failing.errorText.contains("retention deleted records"), "\(failing.errorText)")
    }
}
