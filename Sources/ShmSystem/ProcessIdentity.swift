#if canImport(Glibc)
import Glibc
#endif
import CShm

/// A process as a survivor can recognise it later: its pid plus the kernel's
/// start time of that pid (field 22 of `/proc/PID/stat`, in clock ticks since
/// boot). A pid alone is not enough because pids are reused; the pair is.
public struct ProcessIdentity: Hashable, Sendable, CustomStringConvertible {
    public let pid: Int32
    /// Start time in clock ticks since boot (`starttime` in proc(5)); 0 when unknown.
    public let startTime: UInt64

    /// True when `startTime` holds only the low 32 bits (see `packed`).
    let startTimeIsTruncated: Bool

    public init(pid: Int32, startTime: UInt64) {
        self.pid = pid
        self.startTime = startTime
        self.startTimeIsTruncated = false
    }

    /// The calling process (`getpid` + `/proc/self/stat`).
    public static let current: ProcessIdentity = {
        let pid = getpid()
        return ProcessIdentity(pid: pid, startTime: ProcessIdentity.startTime(of: pid) ?? 0)
    }()

    /// What a survivor can say about a recorded process.
    public enum Liveness: String, Sendable {
        /// The pid exists and its start time matches: the same process is running.
        case alive
        /// No process has this pid, or the pid now belongs to a newer process.
        case dead
    }

    /// Whether the process recorded here still runs (`kill(pid, 0)` and
    /// `/proc/PID/stat`). A pid that was reused by another process counts as dead.
    public var liveness: Liveness {
        guard pid > 0 else { return .dead }
        if kill(pid, 0) != 0 && Errno.current == .noSuchProcess { return .dead }
        guard let now = ProcessIdentity.startTime(of: pid) else { return .dead }
        let observed = startTimeIsTruncated ? now & 0xffff_ffff : now
        if startTime != 0 && observed != startTime { return .dead }
        // A zombie has exited; its resources are as good as released.
        if ProcessIdentity.isZombie(pid) { return .dead }
        return .alive
    }

    public var isAlive: Bool { liveness == .alive }

    /// The identity in one 64-bit word, for lock-free slots in shared
    /// memory: low 32 bits pid, high 32 bits the low 32 bits of the start
    /// time (clock ticks; at 100 Hz that wraps after 497 days of uptime,
    /// after which a recycled pid with a colliding start time is conceivable
    /// but vanishingly rare). 0 means "nobody".
    public var packed: UInt64 {
        UInt64(UInt32(bitPattern: pid)) | (startTime & 0xffff_ffff) << 32
    }

    /// Unpacks `packed`; the start time is only its low 32 bits, which
    /// `liveness` accounts for.
    public init(packed: UInt64) {
        self.pid = Int32(bitPattern: UInt32(truncatingIfNeeded: packed))
        self.startTime = packed >> 32
        self.startTimeIsTruncated = true
    }

    public var description: String { "pid \(pid)" }

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

/// Wall-clock time in nanoseconds since the Unix epoch (`clock_gettime(CLOCK_REALTIME)`).
public func wallClockNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// Monotonic time in nanoseconds (`clock_gettime(CLOCK_MONOTONIC)`), for timeouts.
@inlinable
public func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// Sleeps the calling thread (`nanosleep`), used only by bounded polling loops.
package func sleepNanoseconds(_ ns: UInt64) {
    var request = timespec(tv_sec: Int(ns / 1_000_000_000), tv_nsec: Int(ns % 1_000_000_000))
    var remaining = timespec()
    while nanosleep(&request, &remaining) != 0 && Errno.current == .interrupted {
        request = remaining
    }
}
