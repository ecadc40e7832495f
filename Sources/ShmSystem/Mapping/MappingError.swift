/// Why mapping a file or memory, or an operation on a mapping, failed.
///
/// Each case says what was attempted, on which path, and carries the `Errno`
/// where the kernel gave one.
public enum MappingError: Error, Equatable, Sendable, CustomStringConvertible {
    /// `open(2)` of the file failed.
    case open(path: String, Errno)
    /// `fstat(2)` failed.
    case stat(path: String, Errno)
    /// The file is empty and no length was given; there is nothing to map.
    case emptyFile(path: String)
    /// The requested range reaches past the end of the file. Mapping it would
    /// raise SIGBUS on the first access beyond the end, so it is refused.
    case beyondEndOfFile(path: String, fileSize: Int, offset: Int, length: Int)
    /// An offset or length that is negative, zero where a size is needed, or overflows.
    case invalidRange(path: String, offset: Int, length: Int, reason: String)
    /// `mmap(2)` failed.
    case map(path: String, length: Int, Errno)
    /// `ftruncate(2)` / `posix_fallocate(3)` while growing a file failed.
    case resize(path: String, from: Int, to: Int, Errno)
    /// Growing to a size not larger than the current one.
    case notGrowing(path: String, current: Int, requested: Int)
    /// `mremap(2)` failed.
    case remap(path: String, Errno)
    /// `msync(2)` failed.
    case sync(Errno)
    /// `madvise(2)` failed.
    case advise(String, Errno)
    /// `mlock(2)` / `munlock(2)` failed. ENOMEM usually means RLIMIT_MEMLOCK (`ulimit -l`).
    case lock(length: Int, Errno)
    /// The operation needs write access but the mapping is read-only.
    case readOnly(path: String)
    /// Huge pages were required but the system cannot provide them.
    case hugePagesUnavailable(reason: String)
    /// The file was shrunk (by another process, `ftruncate`) below the end of
    /// the mapped range after it was mapped. Accesses past its new end read
    /// zeros (the SIGBUS guard); the data that was there is gone.
    case truncated(path: String, mappedBytes: Int, fileSize: Int)

    public var description: String {
        switch self {
        case .open(let path, let e): "cannot open '\(path)' to map it: \(e)"
        case .stat(let path, let e): "cannot stat '\(path)': \(e)"
        case .emptyFile(let path): "cannot map '\(path)': the file is empty"
        case .beyondEndOfFile(let path, let size, let offset, let length):
            "cannot map \(length) bytes at offset \(offset) of '\(path)': the file is only \(size) bytes long (mapping past the end would raise SIGBUS on access); grow the file first"
        case .invalidRange(let path, let offset, let length, let reason):
            "cannot map \(length) bytes at offset \(offset) of '\(path)': \(reason)"
        case .map(let path, let length, let e): "mmap of \(length) bytes of '\(path)' failed: \(e)"
        case .resize(let path, let from, let to, let e): "cannot grow '\(path)' from \(from) to \(to) bytes: \(e)"
        case .notGrowing(let path, let current, let requested):
            "cannot grow '\(path)' to \(requested) bytes: it is already \(current) bytes"
        case .remap(let path, let e): "mremap of '\(path)' failed: \(e)"
        case .sync(let e): "msync failed: \(e)"
        case .advise(let advice, let e): "madvise(\(advice)) failed: \(e)"
        case .lock(let length, let e):
            e == .noMemory || e == .notPermitted
                ? "mlock of \(length) bytes failed: \(e) (raise RLIMIT_MEMLOCK, see `ulimit -l`)"
                : "mlock of \(length) bytes failed: \(e)"
        case .readOnly(let path): "'\(path)' is mapped read-only"
        case .hugePagesUnavailable(let reason): "huge pages unavailable: \(reason)"
        case .truncated(let path, let mapped, let size):
            "'\(path)' shrank under its mapping: \(mapped) bytes were mapped, the file has \(size) now (pages past its end read as zeros)"
        }
    }
}
