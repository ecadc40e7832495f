#if canImport(Glibc)
import Glibc
#endif

/// The file-system calls of the persistent parts (the log, its segments and
/// locks), typed: each throws the `Errno` of the one syscall it makes.
package enum FileSystem {
    /// Creates a directory (`mkdir(2)`); returns false if it exists already.
    @discardableResult
    package static func makeDirectory(_ path: String, mode: UInt32 = 0o755) throws(Errno) -> Bool {
        switch valueOrErrno({ mkdir(path, mode_t(mode)) }) {
        case .success: return true
        case .failure(let e) where e == .exists: return false
        case .failure(let e): throw e
        }
    }

    /// Removes a file (`unlink(2)`).
    package static func remove(_ path: String) throws(Errno) {
        if case .failure(let e) = valueOrErrno({ unlink(path) }) { throw e }
    }

    /// Removes a file if it is there; a missing file or any failure is
    /// ignored (cleanup of leftovers that others may remove too).
    package static func removeIfPresent(_ path: String) { _ = unlink(path) }

    /// Whether a directory entry exists at `path` (`access(F_OK)`).
    package static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    /// Whether `path` still names the file open as `descriptor` (`fstat`
    /// and `stat` agree on device and inode, and it has a link): false once
    /// it was deleted, or another file was put in its place.
    package static func descriptor(_ descriptor: Int32, isNamed path: String) -> Bool {
        var held = stat(), named = stat()
        guard fstat(descriptor, &held) == 0, held.st_nlink > 0, stat(path, &named) == 0 else { return false }
        return held.st_ino == named.st_ino && held.st_dev == named.st_dev
    }

    /// The file's length in bytes (`stat(2)` `st_size`).
    package static func size(of path: String) throws(Errno) -> Int {
        var info = stat()
        if case .failure(let e) = valueOrErrno({ stat(path, &info) }) { throw e }
        return Int(info.st_size)
    }

    /// Bytes the file occupies on disk (`st_blocks` × 512), 0 if it is gone.
    package static func allocatedBytes(of path: String) -> Int {
        var info = stat()
        return stat(path, &info) == 0 ? Int(info.st_blocks) * 512 : 0
    }

    /// `fsync(2)` of a directory, so an entry created or renamed in it
    /// survives power loss. Best effort: failures are ignored.
    package static func syncDirectory(_ path: String) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = fsync(fd)
        closeOwnedDescriptor(fd)
    }

    /// Names in the directory at `path` (`opendir`/`readdir`), without "."
    /// and ".."; empty if it cannot be read.
    package static func entries(in path: String) -> [String] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }
}

/// Permission bits of a created file or segment (`mode_t`: 0o600 is
/// read-write for the owner only), before the process umask applies.
public typealias FileMode = mode_t
