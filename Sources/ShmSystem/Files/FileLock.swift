#if canImport(Glibc)
import Glibc
#endif

/// An advisory whole-file lock (`flock(2)`) held through a descriptor this
/// object owns. The kernel drops the lock when the descriptor closes
/// (`deinit`) or the process dies, however it dies — which is why the log
/// and the process leases use it to tell live holders from dead ones.
///
/// The lock file is opened `O_RDWR | O_CREAT | O_CLOEXEC`, mode 0644 (a
/// child started with `exec` does not inherit the lock).
package final class FileLock: @unchecked Sendable {
    /// `LOCK_SH` (many holders) or `LOCK_EX` (one).
    package enum Mode: Sendable {
        case shared, exclusive
        var operation: Int32 { self == .shared ? LOCK_SH : LOCK_EX }
    }

    /// The lock file.
    package let path: String
    private let descriptor: Int32

    /// Opens (creating if missing) the lock file at `path`; takes no lock.
    /// - Throws: the `Errno` of `open(2)`.
    package init(path: String) throws(Errno) {
        self.path = path
        switch valueOrErrno({ open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644) }) {
        case .success(let fd): descriptor = fd
        case .failure(let e): throw e
        }
    }

    deinit { closeOwnedDescriptor(descriptor) }

    /// Takes (or converts to) `mode` if nobody holds a conflicting lock now
    /// (`LOCK_NB`). Returns false when someone does (`EWOULDBLOCK`).
    /// Converting shared ↔ exclusive is not atomic in the kernel: another
    /// process may take the lock in between unless something else (another
    /// lock) serialises the converters.
    package func tryLock(_ mode: Mode) throws(Errno) -> Bool {
        switch zeroOrErrno({ flock(descriptor, mode.operation | LOCK_NB) == 0 ? 0 : Errno.current.rawValue }) {
        case .success: return true
        case .failure(let e) where e == .tryAgain: return false
        case .failure(let e): throw e
        }
    }

    /// Takes `mode`, polling every millisecond for at most `timeout`
    /// (nil: blocks in `flock` until granted). Returns false on timeout.
    package func lock(_ mode: Mode, timeout: Duration?) throws(Errno) -> Bool {
        guard let timeout else {
            if case .failure(let e) = zeroOrErrno({ flock(descriptor, mode.operation) == 0 ? 0 : Errno.current.rawValue }) { throw e }
            return true
        }
        let end = monotonicNanoseconds() &+ timeout.nanoseconds
        while true {
            if try tryLock(mode) { return true }
            if monotonicNanoseconds() > end { return false }
            sleepNanoseconds(1_000_000)
        }
    }

    /// Releases the lock (`LOCK_UN`); the descriptor stays open.
    package func unlock() { _ = flock(descriptor, LOCK_UN) }

    /// Whether `path` still names the file this lock holds (`fstat` and
    /// `stat` agree on the inode, and it has a link). A lock file its holder
    /// unlinks while holding it (`removeWhileHeld`) can be opened by a
    /// contender just before: after locking, the contender checks this and
    /// tries again with a fresh file.
    package var isCurrent: Bool { FileSystem.descriptor(descriptor, isNamed: path) }

    /// Removes the lock file while holding the lock (then `deinit` releases it).
    package func removeWhileHeld() { _ = unlink(path) }
}
