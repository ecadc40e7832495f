#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import Shm

/// Helpers shared by the test targets: unique names, and the executables
/// (`ShmPeer`, `shm`) that multi-process tests spawn.
public enum TestSupport {
    private static let counter = Atomic<Int>(0)

    /// A segment name no other test (or concurrent test run) uses:
    /// `t<pid>.<n>.<label>`.
    public static func uniqueName(_ label: String = "seg") -> String {
        let n = counter.wrappingAdd(1, ordering: .relaxed).newValue
        return "t\(getpid()).\(n).\(label)"
    }

    /// A scratch path under /tmp unique to this test.
    public static func temporaryPath(_ label: String) -> String {
        "/tmp/swift-shm-test-\(uniqueName(label))"
    }

    /// Directory holding the built products (the test bundle's own directory).
    public static let productsDirectory: String = {
        var candidates: [String] = []
        let argv0 = CommandLine.arguments.first ?? ""
        if let slash = argv0.lastIndex(of: "/") { candidates.append(String(argv0[..<slash])) }
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        if n > 0 {
            let exe = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if let slash = exe.lastIndex(of: "/") { candidates.append(String(exe[..<slash])) }
        }
        // Inside an .xctest bundle directory the products are one level up.
        candidates += candidates.map { $0 + "/.." }
        for dir in candidates where access(dir + "/ShmPeer", X_OK) == 0 { return dir }
        return candidates.first ?? "."
    }()

    /// Path of the peer executable the tests spawn as "the other process".
    public static var peerPath: String { productsDirectory + "/ShmPeer" }
    /// Path of the `shm` command-line tool.
    public static var cliPath: String { productsDirectory + "/shm" }

    /// Spawns the peer with `arguments`, capturing its output.
    public static func spawnPeer(_ arguments: [String], inheriting: [Int32: Int32] = [:],
                                 pipeStandardInput: Bool = false) throws -> ChildProcess {
        try ChildProcess.spawn(peerPath, arguments: arguments, inheriting: inheriting,
                               captureOutput: true, pipeStandardInput: pipeStandardInput)
    }

    /// Runs the peer to completion (bounded) and returns its exit status and stdout.
    public static func runPeer(_ arguments: [String], inheriting: [Int32: Int32] = [:],
                               timeout: Duration = .seconds(20)) throws -> (status: ExitStatus, output: String, error: String) {
        let child = try spawnPeer(arguments, inheriting: inheriting)
        let status = try child.wait(timeout: timeout)
        return (status, child.outputText, child.errorText)
    }

    /// Starts `shm` with `arguments`, capturing its output.
    public static func spawnCLI(_ arguments: [String]) throws -> ChildProcess {
        try ChildProcess.spawn(cliPath, arguments: arguments, captureOutput: true)
    }

    private static let deadPeerLock = Mutex<Void>(())

    /// Runs `body` while no other test looks at, or cleans up, what killed
    /// peers left behind. A global cleanup (`ServiceDirectory.cleanup()`,
    /// `shm cleanup`) removes whatever any dead process left — including what
    /// a test running in parallel has just killed a peer to inspect — so
    /// both kinds of test take this lock.
    public static func aroundDeadPeers(_ body: () throws -> Void) throws {
        try deadPeerLock.withLock { _ in try body() }
    }

    /// Runs `shm` with `arguments` to completion (bounded).
    public static func runCLI(_ arguments: [String], stdin: String? = nil,
                              timeout: Duration = .seconds(30)) throws -> (status: ExitStatus, output: String, error: String) {
        let child = try ChildProcess.spawn(cliPath, arguments: arguments, captureOutput: true,
                                           pipeStandardInput: stdin != nil)
        if let stdin {
            try child.writeToStandardInput(Array(stdin.utf8))
            child.closeStandardInput()
        }
        let status = try child.wait(timeout: timeout)
        return (status, child.outputText, child.errorText)
    }
}

/// A joinable pthread, for tests that need a real (blocked) thread rather
/// than a task on the cooperative pool.
public final class TestThread: @unchecked Sendable {
    private var handle = pthread_t()
    private let body: () -> Void

    public init(_ body: @escaping () -> Void) {
        self.body = body
        let unmanaged = Unmanaged.passRetained(self)
        pthread_create(&handle, nil, { arg in
            let thread = Unmanaged<TestThread>.fromOpaque(arg!).takeRetainedValue()
            thread.body()
            return nil
        }, unmanaged.toOpaque())
    }

    public func join() { pthread_join(handle, nil) }
}

extension TestSupport {
    // MARK: Pid namespaces

    /// Why pid namespaces cannot be made here (not root, no `unshare`, not
    /// permitted), or nil if they can. Tests that need them print the reason
    /// and return.
    public static let pidNamespacesUnavailable: String? = {
        guard getuid() == 0 else { return "needs root for unshare -p" }
        guard access("/usr/bin/unshare", X_OK) == 0 else { return "no /usr/bin/unshare" }
        guard let probe = try? ChildProcess.spawn("/usr/bin/unshare", arguments: ["-p", "-f", "--mount-proc", "/bin/true"],
                                                  captureOutput: true),
              let status = try? probe.wait(timeout: .seconds(20)), status == .exited(0) else {
            return "unshare -p -f --mount-proc is not permitted here"
        }
        return nil
    }()

    /// True (after printing why) when pid namespaces cannot be made here.
    public static func skipWithoutPidNamespaces(_ test: String = #function) -> Bool {
        guard let reason = pidNamespacesUnavailable else { return false }
        print("skipped \(test): \(reason)")
        return true
    }

    /// Spawns `executable` in a new pid namespace with its own /proc
    /// (`unshare -p -f --mount-proc`): its pids mean nothing here, and ours
    /// nothing there. Killing the returned process (unshare, which waits for
    /// its child as the namespace's init dies with it) ends the peer too.
    public static func spawnInNewPidNamespace(_ executable: String, _ arguments: [String]) throws -> ChildProcess {
        try ChildProcess.spawn("/usr/bin/unshare", arguments: ["-p", "-f", "--kill-child", "--mount-proc", executable] + arguments,
                               captureOutput: true)
    }
}

extension TestSupport {
    /// `task`'s value, but cancelled after `timeout` (async sequences of this
    /// library end on cancellation): a test fails instead of hanging.
    public static func bounded<T: Sendable>(_ task: Task<T, any Error>, timeout: Duration = .seconds(60)) async throws -> T {
        let watchdog = Task {
            try await Task.sleep(for: timeout)
            task.cancel()
        }
        defer { watchdog.cancel() }
        return try await task.value
    }
}

extension TestSupport {
    /// Polls `condition` every 10 ms until it holds (true) or `timeout` passes (false).
    public static func eventually(_ timeout: Duration = .seconds(20), _ condition: () throws -> Bool) rethrows -> Bool {
        let deadline = monotonicNanoseconds() &+ timeout.nanoseconds
        while monotonicNanoseconds() < deadline {
            if try condition() { return true }
            usleep(10_000)
        }
        return try condition()
    }
}

/// A value shared between threads under a lock.
public final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    public init(_ value: Value) { mutex = Mutex(value) }
    public func withLock<R>(_ body: (inout Value) -> R) -> R { mutex.withLock { body(&$0) } }
    public var value: Value { mutex.withLock { $0 } }
    public func set(_ value: Value) { mutex.withLock { $0 = value } }
}
