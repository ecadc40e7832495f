#if canImport(Glibc)
import Glibc
#endif
import Testing
import ShmTestSupport
@testable import ShmSystem

@Suite("Processes")
struct ProcessTests {
    @Test func currentProcessIsAlive() {
        let me = ProcessIdentity.current
        #expect(me.pid == getpid())
        #expect(me.startTime > 0)
        #expect(me.liveness == .alive)
    }

    @Test func reusedPidCountsAsDead() {
        // Same pid, different start time: the pid was recycled.
        let impostor = ProcessIdentity(pid: getpid(), startTime: ProcessIdentity.current.startTime + 1)
        #expect(impostor.liveness == .dead)
        #expect(ProcessIdentity(pid: 0, startTime: 0).liveness == .dead)
    }

    @Test func killedChildIsDeadAndTimeoutsAreReal() throws {
        let child = try ChildProcess.spawn("/bin/sleep", arguments: ["30"])
        let identity = ProcessIdentity(pid: child.pid, startTime: ProcessIdentity.startTime(of: child.pid) ?? 0)
        #expect(identity.isAlive)
        let start = monotonicNanoseconds()
        #expect(throws: ProcessError.self) { try child.wait(timeout: .milliseconds(100)) }
        #expect(monotonicNanoseconds() - start < 5_000_000_000)
        child.kill(SIGKILL)
        #expect(try child.wait(timeout: .seconds(10)) == .signaled(SIGKILL))
        #expect(identity.liveness == .dead)
    }

    @Test func capturesOutputAndExitStatus() throws {
        let child = try ChildProcess.spawn("/bin/sh", arguments: ["-c", "echo one; echo two >&2; echo three; exit 7"],
                                           captureOutput: true)
        #expect(try child.readLine(timeout: .seconds(10)) == "one")
        #expect(try child.wait(timeout: .seconds(10)) == .exited(7))
        #expect(child.outputText == "one\nthree\n")
        #expect(child.errorText == "two\n")
    }

    @Test func spawnOfMissingExecutableIsAnError() {
        #expect(throws: ProcessError.self) { try ChildProcess.spawn("/nonexistent/program") }
    }
}
