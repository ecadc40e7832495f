#if canImport(Glibc)
import Glibc
#endif
import CShm

/// A process as a survivor can recognise it later, from any pid namespace.
///
/// The proof is the process's lease (`ProcessLease`): a file under
/// `/dev/shm` it holds locked for its life, named by a random token. The pid plus the kernel's start time of that pid (field 22 of
/// `/proc/PID/stat`) are kept as a hint, for identities recorded without a
/// lease: a pid alone is not enough because pids are reused, and in another
/// pid namespace it means nothing at all.
public struct ProcessIdentity: Hashable, Sendable, CustomStringConvertible {
    /// The pid in the recording process's own pid namespace.
    public let pid: Int32
    /// Start time in clock ticks since boot (`starttime` in proc(5)); 0 when unknown.
    public let startTime: UInt64
    /// The token of the process's lease (`ProcessLease`); 0 when it had none.
    public let lease: UInt32

    public init(pid: Int32, startTime: UInt64, lease: UInt32 = 0) {
        self.pid = pid
        self.startTime = startTime
        self.lease = lease
    }

    /// The calling process (`getpid`, `/proc/self/stat`, and its lease,
    /// which this makes on first use).
    public static let current: ProcessIdentity = {
        let pid = getpid()
        return ProcessIdentity(pid: pid, startTime: ProcessIdentity.startTime(of: pid) ?? 0, lease: ProcessLease.token)
    }()

    /// The calling process's user id (`getuid(2)`): names of per-user files.
    package static var userID: UInt32 { getuid() }

    /// The inode of this process's pid namespace (`stat` of
    /// `/proc/self/ns/pid`), 0 if it cannot be read. Two processes with
    /// the same value see the same pids.
    public static let currentPIDNamespace: UInt64 = {
        var st = stat()
        return stat("/proc/self/ns/pid", &st) == 0 ? UInt64(st.st_ino) : 0
    }()

    /// What a survivor can say about a recorded process.
    public enum Liveness: String, Sendable {
        /// It runs: its lease is held (or, without a lease, its pid exists
        /// here with the recorded start time).
        case alive
        /// It has ended: its lease is free or gone (or, without a lease, no
        /// process has its pid here, or the pid now belongs to a newer process).
        case dead
        /// Neither can be proven from here (its lease cannot be tested).
        /// Treated as alive: nothing of it is reclaimed.
        case unknown
    }

    /// Whether the process recorded here still runs. With a lease, the
    /// lease decides (`open` + `flock`, any pid namespace); without one,
    /// `kill(pid, 0)` and `/proc/PID/stat` give a hint that is only right in
    /// the recorder's pid namespace.
    public var liveness: Liveness {
        if lease != 0 {
            switch ProcessLease.state(token: lease) {
            case .held: return .alive
            case .released, .missing: return .dead
            case .unknown: return .unknown
            }
        }
        guard pid > 0 else { return .dead }
        if kill(pid, 0) != 0 && Errno.current == .noSuchProcess { return .dead }
        guard let now = ProcessIdentity.startTime(of: pid) else { return .dead }
        if startTime != 0 && now != startTime { return .dead }
        // A zombie has exited; its resources are as good as released.
        if ProcessIdentity.isZombie(pid) { return .dead }
        return .alive
    }

    /// False only when the process is proven dead.
    public var isAlive: Bool { liveness != .dead }

    /// The identity in one 64-bit word, for lock-free slots in shared
    /// memory: low 32 bits pid, high 32 bits the lease token. 0 means "nobody".
    public var packed: UInt64 {
        UInt64(UInt32(bitPattern: pid)) | UInt64(lease) << 32
    }

    /// Unpacks `packed` (the start time is not in it: 0).
    public init(packed: UInt64) {
        self.pid = Int32(bitPattern: UInt32(truncatingIfNeeded: packed))
        self.startTime = 0
        self.lease = UInt32(truncatingIfNeeded: packed >> 32)
    }

    /// The identity in 30 bits, for words with little room (MPMC slot
    /// states, log record headers): the lease token, or — for a process
    /// without a lease — its pid (at most 22 bits on Linux) with bit 29 set.
    /// Never 0.
    public var compact: UInt32 {
        lease != 0 ? lease : (UInt32(bitPattern: pid) & ProcessIdentity.compactPIDMask) | ProcessIdentity.compactPIDFlag
    }

    static let compactPIDFlag: UInt32 = 1 << 29
    static let compactPIDMask: UInt32 = (1 << 29) - 1

    /// Decodes `compact` (pid 0 when it holds a lease; start time 0).
    public init(compact: UInt32) {
        if compact & ProcessIdentity.compactPIDFlag != 0 {
            self.init(pid: Int32(bitPattern: compact & ProcessIdentity.compactPIDMask), startTime: 0)
        } else {
            self.init(pid: 0, startTime: 0, lease: compact & ProcessIdentity.compactPIDMask)
        }
    }

    public var description: String { pid != 0 ? "pid \(pid)" : "lease \(ProcessLease.hex(lease))" }

    /// Whether some live (non-zombie) process has this pid, when only the pid
    /// was recorded (`kill(pid, 0)`, then `/proc/PID/stat` for zombies).
    /// Cheaper and weaker than `liveness`: a recycled pid looks alive.
    public static func isRunning(pid: Int32) -> Bool {
        guard pid > 0 else { return false }
        if kill(pid, 0) != 0 && Errno.current == .noSuchProcess { return false }
        return !isZombie(pid)
    }

    /// Reads `starttime` from `/proc/PID/stat`, or nil if the process is gone.
    public static func startTime(of pid: Int32) -> UInt64? {
        guard let fields = statFields(of: pid), fields.count > 19 else { return nil }
        // fields[0] is `state` (field 3), so `starttime` (field 22) is fields[19].
        return UInt64(fields[19])
    }

    static func isZombie(_ pid: Int32) -> Bool {
        guard let fields = statFields(of: pid), let state = fields.first else { return false }
        return state == "Z" || state == "X"
    }

    /// The fields of `/proc/PID/stat` after the parenthesised command name
    /// (which may itself contain spaces and parentheses, hence the last ')').
    static func statFields(of pid: Int32) -> [Substring]? {
        guard let text = readSmallFile("/proc/\(pid)/stat"),
              let close = text.lastIndex(of: ")") else { return nil }
        return text[text.index(after: close)...].split(separator: " ")
    }
}

/// Reads a small file (procfs, sysfs) into a String, or nil if it cannot be read.
package func readSmallFile(_ path: String, limit: Int = 65536) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { closeOwnedDescriptor(fd) }
    var bytes = [UInt8]()
    var chunk = [UInt8](repeating: 0, count: 4096)
    while bytes.count < limit {
        let n = chunk.withUnsafeMutableBytes { buffer in
            valueOrErrno { read(fd, buffer.baseAddress, buffer.count) }
        }
        guard case .success(let count) = n else { return nil }
        if count == 0 { break }
        bytes.append(contentsOf: chunk[0..<count])
    }
    return String(decoding: bytes, as: UTF8.self)
}
