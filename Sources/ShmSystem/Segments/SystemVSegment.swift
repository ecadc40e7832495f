#if canImport(Glibc)
import Glibc
#endif
import CShm

/// A System V shared-memory segment (`shmget(2)`, `shmat(2)`, `shmdt(2)`,
/// `shmctl(2)`), for programs that still use them.
///
/// Segments made by `create` carry the swift-shm header like every other
/// segment; `attachForeign` attaches a segment made by another program, as
/// raw bytes with no header expected.
///
/// System V segments are not in `/dev/shm`: their size is limited by
/// `kernel.shmmax`/`shmall`, and `shmget` fails up front (ENOMEM/ENOSPC/EINVAL)
/// when they cannot be had. `create(populate: true)` also faults every page
/// in with `MADV_POPULATE_WRITE` so memory pressure is an error now, not later.
public final class SystemVSegment: Segment {
    /// The identifier `shmget` returned.
    public let id: Int32
    /// The key it was created or found under.
    public let key: key_t
    public let mapping: MemoryMapping
    public let info: SegmentHeader.Info

    private init(id: Int32, key: key_t, mapping: MemoryMapping, info: SegmentHeader.Info) {
        self.id = id
        self.key = key
        self.mapping = mapping
        self.info = info
    }

    /// A key derived from an existing file and a project number (`ftok(3)`).
    public static func key(path: String, projectID: UInt8) throws(SegmentError) -> key_t {
        let key = ftok(path, Int32(projectID))
        if key == -1 { throw .system(operation: "ftok", name: path, .current) }
        return key
    }

    /// Creates a segment for `key` (`IPC_CREAT|IPC_EXCL`), attaches it, writes
    /// the header, runs `initialize`, and publishes it ready. `key` may be
    /// `IPC_PRIVATE` (0) for a segment found only by its `id`.
    public static func create(
        key: key_t, size: Int, mode: Int32 = 0o600, kind: SegmentKind = .raw, kindVersion: UInt32 = 1,
        populate: Bool = false, initialize: SegmentInitializer? = nil
    ) throws(SegmentError) -> SystemVSegment {
        let total = try SegmentSize.total(forData: size)
        let label = "sysv key 0x\(String(UInt32(bitPattern: key), radix: 16))"
        let id: Int32
        switch valueOrErrno({ shmget(key, total, IPC_CREAT | IPC_EXCL | (mode & 0o777)) }) {
        case .success(let value): id = value
        case .failure(let e) where e == .exists: throw .alreadyExists(name: label)
        case .failure(let e) where e == .noSpace || e == .noMemory:
            throw .insufficientSpace(name: label, requested: total, available: 0, filesystem: "System V shared memory (kernel.shmall/shmmni)")
        case .failure(let e) where e == .invalidArgument:
            throw .invalidSize(requested: size, reason: "shmget refused it (EINVAL): above kernel.shmmax?")
        case .failure(let e): throw .system(operation: "shmget", name: label, e)
        }
        do throws(SegmentError) {
            let mapping = try attach(id: id, total: total, access: .readWrite, label: label)
            if populate {
                do { try mapping.advise(.populateWrite) } catch {
                    throw SegmentError.insufficientSpace(name: label, requested: total, available: 0, filesystem: "memory (MADV_POPULATE_WRITE failed)")
                }
            }
            SegmentHeader.initialize(at: mapping.unsafeBaseAddress, totalSize: total, kind: kind, kindVersion: kindVersion,
                                     name: label, creator: .current, creatorUID: getuid())
            let data = MappedBytes(owner: mapping, offset: SegmentHeader.size, count: total - SegmentHeader.size)
            do { try initialize?(data) } catch { throw initializerFailed(error, name: label) }
            SegmentHeader.publishReady(mapping.unsafeBaseAddress)
            let info = try SegmentHeader.validate(mapping.unsafeBaseAddress, objectSize: total, name: label)
            return SystemVSegment(id: id, key: key, mapping: mapping, info: info)
        } catch {
            _ = cshm_sysv_remove(id)
            throw error
        }
    }

    /// Opens the segment for `key` and validates its header.
    public static func open(key: key_t, access: MappingAccess = .readWrite, kind: SegmentKind? = nil,
                            timeout: Duration = .seconds(2)) throws(SegmentError) -> SystemVSegment {
        let label = "sysv key 0x\(String(UInt32(bitPattern: key), radix: 16))"
        let id = try lookup(key: key, label: label)
        return try open(id: id, key: key, access: access, kind: kind, timeout: timeout, label: label)
    }

    /// Opens a segment by its identifier (e.g. one created with `IPC_PRIVATE`).
    public static func open(id: Int32, access: MappingAccess = .readWrite, kind: SegmentKind? = nil,
                            timeout: Duration = .seconds(2)) throws(SegmentError) -> SystemVSegment {
        try open(id: id, key: 0, access: access, kind: kind, timeout: timeout, label: "sysv id \(id)")
    }

    private static func open(id: Int32, key: key_t, access: MappingAccess, kind: SegmentKind?,
                             timeout: Duration, label: String) throws(SegmentError) -> SystemVSegment {
        let status = try stat(id: id, label: label)
        guard status.size >= SegmentHeader.size else {
            throw .foreign(name: label, reason: "\(status.size) bytes is too small for a swift-shm header")
        }
        let mapping = try attach(id: id, total: status.size, access: access, label: label)
        let info = try SegmentHeader.waitUntilReady(mapping.unsafeBaseAddress, objectSize: status.size, name: label,
                                                    timeoutNanoseconds: timeout.nanoseconds)
        if let kind, kind != info.kind {
            throw .kindMismatch(name: label, expected: kind.rawValue, found: info.kind.rawValue)
        }
        return SystemVSegment(id: id, key: key, mapping: mapping, info: info)
    }

    /// Attaches a segment created by another program, without expecting a
    /// swift-shm header: the whole segment is returned as raw bytes.
    public static func attachForeign(key: key_t, access: MappingAccess = .readWrite) throws(SegmentError) -> MemoryMapping {
        let label = "sysv key 0x\(String(UInt32(bitPattern: key), radix: 16))"
        let id = try lookup(key: key, label: label)
        let status = try stat(id: id, label: label)
        return try attach(id: id, total: status.size, access: access, label: label)
    }

    /// Marks the segment for removal (`shmctl(IPC_RMID)`): it disappears
    /// when the last process detaches.
    public func remove() throws(SegmentError) {
        if case .failure(let e) = valueOrErrno({ cshm_sysv_remove(id) }) {
            throw e == .invalidArgument || e == Errno(rawValue: EIDRM)
                ? .notFound(name: "sysv id \(id)") : .system(operation: "shmctl(IPC_RMID)", name: "sysv id \(id)", e)
        }
    }

    /// Removes the segment with this key (`shmget` + `shmctl(IPC_RMID)`).
    public static func remove(key: key_t) throws(SegmentError) {
        let label = "sysv key 0x\(String(UInt32(bitPattern: key), radix: 16))"
        let id = try lookup(key: key, label: label)
        if case .failure(let e) = valueOrErrno({ cshm_sysv_remove(id) }) {
            throw .system(operation: "shmctl(IPC_RMID)", name: label, e)
        }
    }

    /// What `shmctl(IPC_STAT)` reports.
    public struct Status: Sendable {
        public let size: Int
        public let ownerUID: UInt32
        public let mode: UInt32
        public let creatorPID: Int32
        public let attachCount: Int
    }

    /// Current kernel view of this segment (`shmctl(IPC_STAT)`).
    public func status() throws(SegmentError) -> Status { try SystemVSegment.stat(id: id, label: "sysv id \(id)") }

    static func lookup(key: key_t, label: String) throws(SegmentError) -> Int32 {
        switch valueOrErrno({ shmget(key, 0, 0) }) {
        case .success(let id): return id
        case .failure(let e) where e == .notFound: throw .notFound(name: label)
        case .failure(let e) where e == .permissionDenied: throw .permissionDenied(name: label, e)
        case .failure(let e): throw .system(operation: "shmget", name: label, e)
        }
    }

    static func stat(id: Int32, label: String) throws(SegmentError) -> Status {
        var size = 0, uid: UInt32 = 0, mode: UInt32 = 0, cpid: Int32 = 0, nattch: UInt64 = 0
        if case .failure(let e) = valueOrErrno({ cshm_sysv_stat(id, &size, &uid, &mode, &cpid, &nattch) }) {
            throw e == .invalidArgument || e == Errno(rawValue: EIDRM) ? .notFound(name: label)
                : .system(operation: "shmctl(IPC_STAT)", name: label, e)
        }
        return Status(size: size, ownerUID: uid, mode: mode, creatorPID: cpid, attachCount: Int(nattch))
    }

    static func attach(id: Int32, total: Int, access: MappingAccess, label: String) throws(SegmentError) -> MemoryMapping {
        let flags = access == .readOnly ? SHM_RDONLY : 0
        guard let base = shmat(id, nil, flags), base != UnsafeMutableRawPointer(bitPattern: -1) else {
            let e = Errno.current
            throw e == .permissionDenied ? .permissionDenied(name: label, e) : .system(operation: "shmat", name: label, e)
        }
        return MemoryMapping(base: base, length: total, access: access == .readOnly ? .readOnly : .readWrite,
                             label: label, release: .shmdt)
    }
}
