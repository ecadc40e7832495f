#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import CShm

/// Proof of life that works across pid namespaces and pid reuse.
///
/// Processes that share `/dev/shm` often do not share a pid namespace
/// (Docker `--ipc=host` or `--ipc=container:…`, Kubernetes pods with a
/// memory-backed `emptyDir`, sandboxed helpers): a pid recorded by one is
/// meaningless, or names another process, in the other. So each process
/// that takes part holds a *lease*: an empty file
///
/// ```text
/// /dev/shm/swiftshm.live.<token>      token: 8 hex digits, random, 1 ..< 2^29
/// ```
///
/// locked with `flock(LOCK_EX)` for the life of the process, through a
/// descriptor that is closed on `exec`. It is created and locked under a
/// hidden temporary name and only then renamed into place
/// (`renameat2(RENAME_NOREPLACE)`), so a lease file that exists unlocked
/// always means a dead holder: a tester or `removeStale` racing with a
/// process that is still starting can never take it for dead (they did,
/// in the window between `open` and `flock`, and reclaimed a live
/// process's queue claims and ports). The kernel
/// drops the lock when the process dies, however it dies, and any process
/// that can open the file can test it (`flock(LOCK_SH | LOCK_NB)`) from any
/// pid namespace. The token travels with every record of the process
/// (`ProcessIdentity.lease`: segment headers, port tables, role slots), so
/// a reused pid never passes for its predecessor.
///
/// A normal exit removes the file (`atexit`); a killed process leaves it
/// unlocked, and `removeStale()` (run by `Node.init` and `shm cleanup`)
/// removes it. If the lease cannot be made (no `/dev/shm`, no inodes), the
/// token is 0 and others fall back to pid + start time — a hint only.
public enum ProcessLease {
    static let directory = "/dev/shm"
    static let prefix = "swiftshm.live."

    /// Tokens are below 2^29, so an identity fits 30 bits
    /// (`ProcessIdentity.compact`) where a word has little room.
    public static let tokenLimit: UInt32 = 1 << 29

    /// This process's lease token (0: none could be made). Made on first use.
    public static var token: UInt32 { current.token }

    private struct Held: Sendable {
        let token: UInt32
        let path: String
    }

    private static let current: Held = acquire()

    /// The lease file with `token` (the name holds no pid: a record that
    /// has room for 32 bits only can still name its process).
    public static func path(token: UInt32) -> String {
        directory + "/" + prefix + hex(token)
    }

    /// `token` as 8 lowercase hex digits.
    public static func hex(_ token: UInt32) -> String {
        let digits = String(token, radix: 16)
        return String(repeating: "0", count: 8 - digits.count) + digits
    }

    /// Hidden names of leases being made (locked, not yet renamed into place).
    static let creatingPrefix = ".swiftshm.live-creating."

    private static func acquire() -> Held {
        for _ in 0..<32 {
            let token = UInt32.random(in: 1..<ProcessLease.tokenLimit)
            let path = path(token: token)
            // Not `StagedFile.temporaryName`: that names our lease, which this makes.
            let staged = StagedFile(path: path, temporaryPath: directory + "/" + creatingPrefix + hex(token) + "." + String(getpid(), radix: 16))
            let temporary = staged.temporaryPath
            let fd = open(temporary, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
            if fd < 0 {
                if Errno.current == .exists { continue }
                return Held(token: 0, path: "")
            }
            // Readable by everyone whatever the umask: others test the lock.
            _ = fchmod(fd, 0o644)
            guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
                // Someone else holds it: a cleanup testing what looked like a dead
                // maker's file (it removes only old ones, but be robust). Another token.
                closeOwnedDescriptor(fd)
                unlink(temporary)
                continue
            }
            // Locked first, visible second: the lease file never exists unlocked while we live.
            do { try staged.publish() } catch {
                closeOwnedDescriptor(fd)
                // Another process has this token, or a cleanup removed our temporary file
                // before we locked it (it looked like a dead maker's): try again.
                if error == .exists || error == .notFound { continue }
                return Held(token: 0, path: "")
            }
            // The descriptor stays open (and the lock held) until the process ends.
            atexit { ProcessLease.releaseAtExit() }
            return Held(token: token, path: path)
        }
        return Held(token: 0, path: "")
    }

    private static func releaseAtExit() {
        let held = current
        if held.token != 0 { unlink(held.path) }
    }

    /// What a lease file says about its holder.
    public enum State: Sendable, Equatable {
        /// The file is locked: its process runs (in whatever pid namespace).
        case held
        /// The file exists and nobody holds its lock: its process died.
        case released
        /// No such file: the process ended (and removed it), or someone
        /// removed it after the process died.
        case missing
        /// The file could not be tested (no permission, an unexpected error).
        case unknown
    }

    /// Tests the lease `token` (`open` + `flock(LOCK_SH|LOCK_NB)`).
    public static func state(token: UInt32) -> State {
        let fd = open(path(token: token), O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return Errno.current == .notFound ? .missing : .unknown }
        defer { closeOwnedDescriptor(fd) }
        if flock(fd, LOCK_SH | LOCK_NB) == 0 {
            _ = flock(fd, LOCK_UN)
            return .released
        }
        return Errno.current == .tryAgain ? .held : .unknown
    }

    /// Removes lease files whose holders died (their lock is free); returns
    /// their names.
    @discardableResult
    public static func removeStale() -> [String] {
        var removed: [String] = []
        for name in SegmentDirectory.entries() where name.hasPrefix(prefix) || name.hasPrefix(creatingPrefix) {
            if name.hasPrefix(creatingPrefix) {
                // A process killed while making its lease: unlocked and older than a
                // few seconds (a live maker locks it within microseconds of creating it).
                var status = stat()
                guard stat(directory + "/" + name, &status) == 0,
                      time(nil) - status.st_mtim.tv_sec >= 10 else { continue }
                let fd = open(directory + "/" + name, O_RDONLY | O_CLOEXEC)
                guard fd >= 0 else { continue }
                if flock(fd, LOCK_EX | LOCK_NB) == 0, unlink(directory + "/" + name) == 0 { removed.append(name) }
                closeOwnedDescriptor(fd)
                continue
            }
            guard let token = UInt32(name.dropFirst(prefix.count), radix: 16), token != 0, token != current.token else { continue }
            // Take the lock ourselves while unlinking, so a racing tester
            // sees either the file or nothing; a holder cannot come back.
            let fd = open(directory + "/" + name, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { continue }
            if flock(fd, LOCK_EX | LOCK_NB) == 0, unlink(directory + "/" + name) == 0 { removed.append(name) }
            closeOwnedDescriptor(fd)
        }
        if !removed.isEmpty { Diagnostics.debug("removed the leases of dead processes", ["leases": removed.joined(separator: ",")]) }
        return removed
    }
}
