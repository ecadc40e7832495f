#if canImport(Glibc)
import Glibc
#endif

/// How a mapping may be accessed and whether writes are shared.
public enum MappingAccess: Sendable, Hashable {
    /// `PROT_READ`, `MAP_SHARED`: sees every other process's writes.
    case readOnly
    /// `PROT_READ|PROT_WRITE`, `MAP_SHARED`: writes reach the file (or segment)
    /// and every other process that maps it.
    case readWrite
    /// `PROT_READ|PROT_WRITE`, `MAP_PRIVATE`: writes go to private
    /// copy-on-write pages and never reach the file.
    case copyOnWrite

    var protection: Int32 {
        self == .readOnly ? PROT_READ : PROT_READ | PROT_WRITE
    }
    var sharing: Int32 { self == .copyOnWrite ? MAP_PRIVATE : MAP_SHARED }
    var openFlags: Int32 { self == .readWrite ? O_RDWR : O_RDONLY }
    public var isWritable: Bool { self != .readOnly }
}

/// How `sync` waits for dirty pages (`msync(2)` flags).
public enum SyncMode: Sendable {
    /// `MS_SYNC`: returns once the pages are written to the file's storage.
    case synchronous
    /// `MS_ASYNC`: schedules write-back and returns at once.
    case asynchronous
    /// `MS_INVALIDATE` (with `MS_SYNC`): also drops other mappings' cached
    /// copies so they re-read the file.
    case invalidate

    var flags: Int32 {
        switch self {
        case .synchronous: MS_SYNC
        case .asynchronous: MS_ASYNC
        case .invalidate: MS_SYNC | MS_INVALIDATE
        }
    }
}

/// Access-pattern hints for the kernel (`madvise(2)` advice values).
public enum MappingAdvice: Sendable, CustomStringConvertible {
    /// `MADV_NORMAL`.
    case normal
    /// `MADV_SEQUENTIAL`: read ahead aggressively, drop pages soon after use.
    case sequential
    /// `MADV_RANDOM`: no read-ahead.
    case random
    /// `MADV_WILLNEED`: start reading the range in now.
    case willNeed
    /// `MADV_DONTNEED`: the pages may be dropped; a shared file mapping
    /// re-reads them from the file, an anonymous private one sees zeros.
    case dontNeed
    /// `MADV_HUGEPAGE`: back the range with transparent huge pages where possible.
    case hugePage
    /// `MADV_NOHUGEPAGE`.
    case noHugePage
    /// `MADV_POPULATE_READ` (Linux 5.14): fault the pages in for reading now;
    /// fails with an error (instead of a later SIGBUS) if they cannot be.
    case populateRead
    /// `MADV_POPULATE_WRITE` (Linux 5.14): fault the pages in writable now.
    case populateWrite

    var rawValue: Int32 {
        switch self {
        case .normal: MADV_NORMAL
        case .sequential: MADV_SEQUENTIAL
        case .random: MADV_RANDOM
        case .willNeed: MADV_WILLNEED
        case .dontNeed: MADV_DONTNEED
        case .hugePage: MADV_HUGEPAGE
        case .noHugePage: MADV_NOHUGEPAGE
        case .populateRead: 22
        case .populateWrite: 23
        }
    }

    public var description: String {
        switch self {
        case .normal: "MADV_NORMAL"
        case .sequential: "MADV_SEQUENTIAL"
        case .random: "MADV_RANDOM"
        case .willNeed: "MADV_WILLNEED"
        case .dontNeed: "MADV_DONTNEED"
        case .hugePage: "MADV_HUGEPAGE"
        case .noHugePage: "MADV_NOHUGEPAGE"
        case .populateRead: "MADV_POPULATE_READ"
        case .populateWrite: "MADV_POPULATE_WRITE"
        }
    }
}

/// The system page size (`sysconf(_SC_PAGESIZE)`).
public let pageSize: Int = Int(sysconf(Int32(_SC_PAGESIZE)))

@inlinable
func roundUp(_ value: Int, toMultipleOf alignment: Int) -> Int {
    (value + alignment - 1) / alignment * alignment
}

@inlinable
func roundDown(_ value: Int, toMultipleOf alignment: Int) -> Int {
    value / alignment * alignment
}
