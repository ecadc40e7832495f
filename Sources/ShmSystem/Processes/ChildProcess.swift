#if canImport(Glibc)
import Glibc
#endif
import CShm

/// Why spawning or waiting for a child process failed.
public enum ProcessError: Error, Equatable, Sendable, CustomStringConvertible {
    case spawn(executable: String, Errno)
    case timedOut(pid: Int32, after: Duration, waitingFor: String)
    case system(operation: String, Errno)

    public var description: String {
        switch self {
        case .spawn(let exe, let e): "cannot spawn '\(exe)': \(e)"
        case .timedOut(let pid, let timeout, let what): "pid \(pid): no \(what) within \(timeout.timeoutDescription)"
        case .system(let op, let e): "\(op) failed: \(e)"
        }
    }
}

/// How a child process ended.
public enum ExitStatus: Equatable, Sendable, CustomStringConvertible {
    case exited(Int32)
    case signaled(Int32)

    public var description: String {
        switch self {
        case .exited(let code): "exited with status \(code)"
        case .signaled(let signal): "killed by signal \(signal)"
        }
    }
}

/// A process started with `posix_spawn(3)` (never `fork` without exec: the
/// parent is a multithreaded Swift process).
///
/// - Descriptors listed in `inheriting` are `dup2`'d into the child at the
///   given numbers with close-on-exec cleared: that is how a memfd segment or
///   one end of a `UnixSocket.pair()` reaches a child. Every other descriptor
///   this library opens is close-on-exec.
/// - Exit is observed through a `pidfd_open(2)` descriptor, so every wait has
///   a real timeout and no SIGCHLD handler is needed.
/// - Output can be captured (`captureOutput: true`) and is read while waiting,
///   so a chatty child never blocks on a full pipe.
/// - A `ChildProcess` released while the child still runs kills it
///   (`SIGKILL`) and reaps it, so no test leaves orphans behind.
public final class ChildProcess: @unchecked Sendable {
    public let pid: Int32
    private let pidfd: Int32
    private var stdoutFD: Int32
    private var stderrFD: Int32
    private var stdinFD: Int32
    private var status: ExitStatus?
    /// Everything the child wrote to stdout so far (when captured).
    public private(set) var standardOutput: [UInt8] = []
    /// Everything the child wrote to stderr so far (when captured).
    public private(set) var standardError: [UInt8] = []
    private var lineCursor = 0

    private init(pid: Int32, pidfd: Int32, stdoutFD: Int32, stderrFD: Int32, stdinFD: Int32) {
        self.pid = pid
        self.pidfd = pidfd
        self.stdoutFD = stdoutFD
        self.stderrFD = stderrFD
        self.stdinFD = stdinFD
    }

    deinit {
        if status == nil {
            _ = Glibc.kill(pid, SIGKILL)
            var raw: Int32 = 0
            _ = valueOrErrno { waitpid(pid, &raw, 0) }
        }
        for fd in [pidfd, stdoutFD, stderrFD, stdinFD] where fd >= 0 { closeOwnedDescriptor(fd) }
    }

    /// Spawns `executable` (a path) with `arguments` (not including argv[0]).
    ///
    /// - Parameters:
    ///   - environment: extra variables added to this process's environment.
    ///   - inheriting: child descriptor number → parent descriptor.
    ///   - captureOutput: collect stdout and stderr instead of sharing ours.
    ///   - pipeStandardInput: give the child a stdin pipe (`writeToStandardInput`).
    public static func spawn(
        _ executable: String, arguments: [String] = [], environment: [String: String] = [:],
        inheriting: [Int32: Int32] = [:], captureOutput: Bool = false, pipeStandardInput: Bool = false
    ) throws(ProcessError) -> ChildProcess {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }

        // The child starts with default signal dispositions and an empty mask.
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGPIPE, SIGCHLD, SIGINT, SIGTERM, SIGUSR1, SIGUSR2] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

        var parentEnds: [Int32] = []
        var childEnds: [Int32] = []
        func makePipe() throws(ProcessError) -> (read: Int32, write: Int32) {
            var fds: [Int32] = [-1, -1]
            if case .failure(let e) = valueOrErrno({ cshm_pipe_cloexec(&fds) }) { throw .system(operation: "pipe2", e) }
            return (fds[0], fds[1])
        }
        var out: Int32 = -1, err: Int32 = -1, input: Int32 = -1
        do {
            if captureOutput {
                let o = try makePipe(), e = try makePipe()
                out = o.read; err = e.read
                parentEnds += [o.read, e.read]
                childEnds += [o.write, e.write]
                posix_spawn_file_actions_adddup2(&actions, o.write, 1)
                posix_spawn_file_actions_adddup2(&actions, e.write, 2)
            }
            if pipeStandardInput {
                let i = try makePipe()
                input = i.write
                parentEnds.append(i.write)
                childEnds.append(i.read)
                posix_spawn_file_actions_adddup2(&actions, i.read, 0)
            } else {
                posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
            }
        } catch {
            for fd in parentEnds + childEnds { closeOwnedDescriptor(fd) }
            throw error
        }
        for (childFD, parentFD) in inheriting.sorted(by: { $0.key < $1.key }) {
            // dup2 onto the same number is a no-op in POSIX, but glibc ≥ 2.29
            // clears FD_CLOEXEC in that case, which is what we want.
            posix_spawn_file_actions_adddup2(&actions, parentFD, childFD)
        }

        var env: [String: String] = [:]
        var entry = environ
        while let pointer = entry.pointee {
            let text = String(cString: pointer)
            if let eq = text.firstIndex(of: "=") { env[String(text[..<eq])] = String(text[text.index(after: eq)...]) }
            entry += 1
        }
        for (key, value) in environment { env[key] = value }

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for p in argv { free(p) }
            for p in envp { free(p) }
        }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        for fd in childEnds { closeOwnedDescriptor(fd) }
        guard rc == 0 else {
            for fd in parentEnds { closeOwnedDescriptor(fd) }
            throw .spawn(executable: executable, Errno(rawValue: rc))
        }
        let pidfd = cshm_pidfd_open(pid)
        guard pidfd >= 0 else {
            let e = Errno.current
            _ = Glibc.kill(pid, SIGKILL)
            var raw: Int32 = 0
            _ = waitpid(pid, &raw, 0)
            for fd in parentEnds { closeOwnedDescriptor(fd) }
            throw .system(operation: "pidfd_open", e)
        }
        return ChildProcess(pid: pid, pidfd: pidfd, stdoutFD: out, stderrFD: err, stdinFD: input)
    }

    /// The path of the running executable (`readlink /proc/self/exe`), to
    /// spawn another instance of this program.
    public static var currentExecutablePath: String {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBufferPointer { b in
            b.withMemoryRebound(to: CChar.self) { readlink("/proc/self/exe", $0.baseAddress!, $0.count - 1) }
        }
        return n > 0 ? String(decoding: buffer[0..<n], as: UTF8.self) : CommandLine.arguments[0]
    }

    /// Sends `signal` to the child (`kill(2)`); a no-op after it was reaped.
    public func kill(_ signal: Int32 = SIGKILL) {
        guard status == nil else { return }
        _ = Glibc.kill(pid, signal)
    }

    /// Writes to the child's stdin pipe.
    public func writeToStandardInput(_ bytes: [UInt8]) throws(ProcessError) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { b in valueOrErrno { write(stdinFD, b.baseAddress, b.count) } }
            switch n {
            case .success(let count): offset += count
            case .failure(let e): throw .system(operation: "write to child stdin", e)
            }
        }
    }

    /// Closes the child's stdin (it sees end-of-file).
    public func closeStandardInput() {
        if stdinFD >= 0 { closeOwnedDescriptor(stdinFD); stdinFD = -1 }
    }

    /// Waits at most `timeout` for the child to exit, collecting its output,
    /// and reaps it.
    @discardableResult
    public func wait(timeout: Duration) throws(ProcessError) -> ExitStatus {
        if let status { return status }
        let deadline = monotonicNanoseconds() &+ timeout.nanoseconds
        while true {
            if try pump(until: deadline, stopWhen: { false }) {
                return try reap()
            }
            if monotonicNanoseconds() >= deadline {
                throw .timedOut(pid: pid, after: timeout, waitingFor: "exit")
            }
        }
    }

    /// Waits at most `timeout` for the next complete line on the child's
    /// stdout and returns it (without the newline). Returns nil if the child
    /// exited without writing another line.
    public func readLine(timeout: Duration) throws(ProcessError) -> String? {
        let deadline = monotonicNanoseconds() &+ timeout.nanoseconds
        while true {
            if let line = takeLine() { return line }
            let exited = try pump(until: deadline, stopWhen: { self.standardOutput[self.lineCursor...].contains(10) })
            if let line = takeLine() { return line }
            if exited && stdoutFD < 0 { return nil }
            if monotonicNanoseconds() >= deadline {
                throw .timedOut(pid: pid, after: timeout, waitingFor: "line of output")
            }
        }
    }

    /// Captured stdout as text.
    public var outputText: String { String(decoding: standardOutput, as: UTF8.self) }
    /// Captured stderr as text.
    public var errorText: String { String(decoding: standardError, as: UTF8.self) }

    private func takeLine() -> String? {
        guard let newline = standardOutput[lineCursor...].firstIndex(of: 10) else { return nil }
        let line = String(decoding: standardOutput[lineCursor..<newline], as: UTF8.self)
        lineCursor = newline + 1
        return line
    }

    /// Polls the pidfd and output pipes until the child has exited and its
    /// pipes are drained (returns true), `stopWhen` holds, or `deadline`.
    private func pump(until deadline: UInt64, stopWhen: () -> Bool) throws(ProcessError) -> Bool {
        var exited = false
        while true {
            var fds = [pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)]
            if stdoutFD >= 0 { fds.append(pollfd(fd: stdoutFD, events: Int16(POLLIN), revents: 0)) }
            if stderrFD >= 0 { fds.append(pollfd(fd: stderrFD, events: Int16(POLLIN), revents: 0)) }
            let now = monotonicNanoseconds()
            let remainingMS = now >= deadline ? 0 : Int32(clamping: (deadline - now + 999_999) / 1_000_000)
            let ready: Int32
            switch valueOrErrno({ poll(&fds, nfds_t(fds.count), exited ? 0 : remainingMS) }) {
            case .success(let n): ready = n
            case .failure(let e): throw .system(operation: "poll", e)
            }
            for entry in fds where entry.revents != 0 {
                if entry.fd == pidfd { exited = true; continue }
                drain(entry.fd)
            }
            if exited && stdoutFD < 0 && stderrFD < 0 { return true }
            if exited && ready == 0 { return true }   // pipes quiet; write ends may live on in grandchildren
            if stopWhen() { return exited }
            if ready == 0 && monotonicNanoseconds() >= deadline { return exited }
        }
    }

    private func drain(_ fd: Int32) {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = chunk.withUnsafeMutableBytes { b in valueOrErrno { read(fd, b.baseAddress, b.count) } }
        switch n {
        case .success(let count) where count > 0:
            if fd == stdoutFD { standardOutput += chunk[0..<count] } else { standardError += chunk[0..<count] }
        default:
            closeOwnedDescriptor(fd)
            if fd == stdoutFD { stdoutFD = -1 } else { stderrFD = -1 }
        }
    }

    private func reap() throws(ProcessError) -> ExitStatus {
        var raw: Int32 = 0
        if case .failure(let e) = valueOrErrno({ waitpid(pid, &raw, 0) }) { throw .system(operation: "waitpid", e) }
        // WIFEXITED / WEXITSTATUS / WTERMSIG are macros.
        let result: ExitStatus = (raw & 0x7f) == 0 ? .exited((raw >> 8) & 0xff) : .signaled(raw & 0x7f)
        status = result
        return result
    }
}
