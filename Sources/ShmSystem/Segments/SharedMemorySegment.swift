#if canImport(Glibc)
import Glibc
#endif
import CShm
import Synchronization

/// A named POSIX shared-memory segment (`shm_open(3)`), visible in `/dev/shm`
/// as `swiftshm.<uid>.<name>`.
///
/// ```swift
/// let segment = try SharedMemorySegment.create("camera.frames", size: 64 << 20)
/// segment.data.write(frame, at: 0)
/// // in another process:
/// let same = try SharedMemorySegment.open("camera.frames")
/// ```
///
/// **Capacity up front.** `create` reserves every page with
/// `posix_fallocate(3)`, so a `/dev/shm` that is too small fails at create
/// time with `SegmentError.insufficientSpace` (naming the space available),
/// never with SIGBUS on a later write.
///
/// **Never half-created.** The segment is built and initialized under a
/// hidden temporary name and moved into place with
/// `renameat2(RENAME_NOREPLACE)`: other processes see a fully initialized
/// segment or none. A failed create leaves nothing behind.
///
/// **Lifetime.** With `.removedWithCreator` (the default) the creator's
/// handle unlinks the name when it is released; `.persistent` leaves the
/// segment until `unlink`/`shm rm`. Mappings held by other processes stay
/// valid after an unlink.
public final class SharedMemorySegment: Segment {
    /// Where `shm_open` keeps its objects on Linux.
    public static let directory = "/dev/shm"

    /// What happens to the name when the creating handle is released.
    ///
    /// "Released" is not the end of the handle's scope: an optimized build
    /// releases an object after its last use. A creator that must keep the
    /// name for others to open holds the handle explicitly
    /// (`withExtendedLifetime(segment) { … }`, a stored property) or asks
    /// for `.persistent`.
    public enum Lifetime: Sendable {
        /// The creator's handle unlinks the segment in `deinit` (after its
        /// last use in optimized builds: see above).
        case removedWithCreator
        /// The segment stays until `unlink` / `shm rm`.
        case persistent
    }

    public let name: SegmentName
    public let mapping: MemoryMapping
    public let info: SegmentHeader.Info
    /// True for the handle that created the segment.
    public let isCreator: Bool
    /// File mode (permission bits) of the object when it was opened.
    public let mode: FileMode
    /// Owner of the object in `/dev/shm`.
    public let ownerUID: uid_t
    /// What the creator asked to back the data area with (`.normal` for openers).
    public let pageBacking: PageBacking

    private let fd: Int32
    private let inode: ino_t
    private let lifetime: Lifetime
    private let unlinked = Atomic<Bool>(false)

    private init(name: SegmentName, fd: Int32, mapping: MemoryMapping, info: SegmentHeader.Info,
                 isCreator: Bool, stat st: stat, lifetime: Lifetime, pageBacking: PageBacking = .normal) {
        self.pageBacking = pageBacking
        self.name = name
        self.fd = fd
        self.mapping = mapping
        self.info = info
        self.isCreator = isCreator
        self.mode = st.st_mode & 0o7777
        self.ownerUID = st.st_uid
        self.inode = st.st_ino
        self.lifetime = lifetime
    }

    deinit {
        if isCreator && lifetime == .removedWithCreator {
            try? unlinkIfStillOurs()
        }
        closeOwnedDescriptor(fd)
    }

    // MARK: Create

    /// Creates a new segment with `size` bytes of data area; fails if the name exists.
    ///
    /// Calls `shm_open(O_CREAT|O_EXCL)` on a temporary name, `fchmod`,
    /// `posix_fallocate`, `mmap`, writes the header, runs `initialize`,
    /// publishes the header as ready, then `renameat2(RENAME_NOREPLACE)`s it
    /// into place.
    ///
    /// - Parameters:
    ///   - mode: permission bits, applied exactly (the umask does not narrow them).
    ///   - kind: the structure the segment will hold (checked by `open`).
    ///   - hugePages: `.transparent` asks for transparent huge pages
    ///     (`madvise(MADV_HUGEPAGE)`); on tmpfs that works only when
    ///     `/sys/kernel/mm/transparent_hugepage/shmem_enabled` allows it.
    ///   - populate: pre-fault every page now (`MAP_POPULATE`).
    ///   - initialize: fills the data area before anyone can open the segment.
    public static func create(
        _ name: SegmentName, size: Int, mode: FileMode = 0o600, kind: SegmentKind = .raw, kindVersion: UInt32 = 1,
        lifetime: Lifetime = .removedWithCreator, hugePages: HugePagePolicy = .none, populate: Bool = false,
        initialize: SegmentInitializer? = nil
    ) throws(SegmentError) -> SharedMemorySegment {
        let total = try SegmentSize.total(forData: size)
        if hugePages == .required {
            // tmpfs (/dev/shm) cannot use reserved huge pages; MemfdSegment can.
            throw .hugePagesUnavailable(name: name.name, reason: "POSIX segments live on tmpfs, which cannot use reserved huge pages; use MemfdSegment with .required, or .transparent here")
        }
        if exists(name) { throw .alreadyExists(name: name.name) }

        let temporary = temporaryFileName(for: name)
        let fd: Int32
        switch valueOrErrno({ shm_open("/" + temporary, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode) }) {
        case .success(let value): fd = value
        case .failure(let e): throw .system(operation: "shm_open", name: name.name, e)
        }
        var published = false
        defer {
            if !published {
                _ = shm_unlink("/" + temporary)
                closeOwnedDescriptor(fd)
            }
        }
        if case .failure(let e) = valueOrErrno({ fchmod(fd, mode) }) {
            throw .system(operation: "fchmod", name: name.name, e)
        }
        try reserve(fd: fd, bytes: total, name: name.name)

        let mapping: MemoryMapping
        do {
            mapping = try MemoryMapping.map(fd: fd, offset: 0, length: total, access: .readWrite,
                                            label: name.name, populate: populate)
        } catch {
            throw .system(operation: "mmap", name: name.name, error.errno)
        }
        let backing = hugePages == .none ? PageBacking.normal
            : mapping.adviseTransparentHugePages(shared: true, range: SegmentHeader.size..<total)
        SegmentHeader.initialize(at: mapping.unsafeBaseAddress, totalSize: total, kind: kind, kindVersion: kindVersion,
                                 name: name.name, creator: .current, creatorUID: name.uid,
                                 ownedByCreator: lifetime == .removedWithCreator)
        let data = MappedBytes(owner: mapping, offset: SegmentHeader.size, count: total - SegmentHeader.size)
        do { try initialize?(data) } catch { throw initializerFailed(error, name: name.name) }
        SegmentHeader.publishReady(mapping.unsafeBaseAddress)
        let info = try SegmentHeader.validate(mapping.unsafeBaseAddress, objectSize: total, name: name.name)

        // Appear complete or not at all: the one build-then-rename of the
        // library (`StagedFile`, renameat2 RENAME_NOREPLACE).
        let staged = StagedFile(path: directory + "/" + name.fileName, temporaryPath: directory + "/" + temporary)
        do { try staged.publish() } catch {
            throw error == .exists ? .alreadyExists(name: name.name) : .system(operation: "renameat2", name: name.name, error)
        }
        published = true
        var st = stat()
        _ = fstat(fd, &st)
        return SharedMemorySegment(name: name, fd: fd, mapping: mapping, info: info, isCreator: true,
                                   stat: st, lifetime: lifetime, pageBacking: backing)
    }

    /// `create` taking the name as a string.
    public static func create(
        _ name: String, size: Int, mode: FileMode = 0o600, kind: SegmentKind = .raw, kindVersion: UInt32 = 1,
        lifetime: Lifetime = .removedWithCreator, hugePages: HugePagePolicy = .none, populate: Bool = false,
        initialize: SegmentInitializer? = nil
    ) throws(SegmentError) -> SharedMemorySegment {
        try create(SegmentName(name), size: size, mode: mode, kind: kind, kindVersion: kindVersion,
                   lifetime: lifetime, hugePages: hugePages, populate: populate, initialize: initialize)
    }

    /// Reserves `bytes` of backing store for `fd` (`posix_fallocate(3)`); on
    /// ENOSPC the error names the space the filesystem has left.
    static func reserve(fd: Int32, bytes: Int, name: String) throws(SegmentError) {
        switch zeroOrErrno({ posix_fallocate(fd, 0, off_t(bytes)) }) {
        case .success: return
        case .failure(let e) where e == .noSpace || e == .fileTooLarge:
            var fs = statvfs()
            let available = fstatvfs(fd, &fs) == 0 ? Int(fs.f_bavail) * Int(fs.f_frsize) : 0
            throw .insufficientSpace(name: name, requested: bytes, available: available, filesystem: directory)
        case .failure(let e):
            throw .system(operation: "posix_fallocate", name: name, e)
        }
    }

    private static let temporaryCounter = Atomic<UInt64>(0)

    /// `.swiftshm-creating.<uid>.<pid>-<lease>.<n>.<name>`: hidden from
    /// `shm ls`, found by `shm cleanup` if its creator died mid-create (its
    /// lease tells, from any pid namespace; the pid alone could be reused).
    static func temporaryFileName(for name: SegmentName) -> String {
        let n = temporaryCounter.wrappingAdd(1, ordering: .relaxed).newValue
        let me = ProcessIdentity.current
        return "\(temporaryPrefix)\(name.uid).\(me.pid)-\(ProcessLease.hex(me.lease)).\(n).\(name.name)"
    }

    static let temporaryPrefix = ".swiftshm-creating."

    // MARK: Open

    /// Opens an existing segment and validates its header.
    ///
    /// - Parameters:
    ///   - access: `.readWrite` or `.readOnly` (`.copyOnWrite` maps private pages).
    ///   - kind: if given, the segment must hold this kind of structure.
    ///   - timeout: how long to wait for a creator that is still initializing.
    /// - Throws: `.notFound`, `.permissionDenied`, `.foreign`, `.truncated`,
    ///   `.incompatibleVersion`, `.corruptHeader`, `.kindMismatch`, `.notReady`.
    public static func open(
        _ name: SegmentName, access: MappingAccess = .readWrite, kind: SegmentKind? = nil,
        timeout: Duration = .seconds(2)
    ) throws(SegmentError) -> SharedMemorySegment {
        let fd: Int32
        switch valueOrErrno({ shm_open(name.posixName, access.openFlags | O_CLOEXEC, 0) }) {
        case .success(let value): fd = value
        case .failure(let e) where e == .notFound: throw .notFound(name: name.name)
        case .failure(let e) where e == .permissionDenied || e == .notPermitted: throw .permissionDenied(name: name.name, e)
        case .failure(let e): throw .system(operation: "shm_open", name: name.name, e)
        }
        do throws(SegmentError) {
            var st = stat()
            if case .failure(let e) = valueOrErrno({ fstat(fd, &st) }) {
                throw SegmentError.system(operation: "fstat", name: name.name, e)
            }
            let size = Int(st.st_size)
            guard size >= SegmentHeader.size else {
                if size == 0 { throw SegmentError.foreign(name: name.name, reason: "the object is empty") }
                throw SegmentError.truncated(name: name.name, actualSize: size, expectedSize: SegmentHeader.size)
            }
            let mapping: MemoryMapping
            do {
                mapping = try MemoryMapping.map(fd: fd, offset: 0, length: size, access: access, label: name.name)
            } catch {
                throw SegmentError.system(operation: "mmap", name: name.name, error.errno)
            }
            let info = try SegmentHeader.waitUntilReady(mapping.unsafeBaseAddress, objectSize: size, name: name.name,
                                                        timeoutNanoseconds: timeout.nanoseconds)
            if let kind, kind != info.kind {
                throw SegmentError.kindMismatch(name: name.name, expected: kind.rawValue, found: info.kind.rawValue)
            }
            return SharedMemorySegment(name: name, fd: fd, mapping: mapping, info: info, isCreator: false,
                                       stat: st, lifetime: .persistent)
        } catch {
            closeOwnedDescriptor(fd)
            throw error
        }
    }

    /// `open` taking the name as a string.
    public static func open(_ name: String, access: MappingAccess = .readWrite, kind: SegmentKind? = nil,
                            timeout: Duration = .seconds(2)) throws(SegmentError) -> SharedMemorySegment {
        try open(SegmentName(name), access: access, kind: kind, timeout: timeout)
    }

    /// Opens the segment if it exists, otherwise creates it. Safe when
    /// several processes race: exactly one creates, the others open what it made.
    ///
    /// An existing segment whose data area is smaller than `size` is an error
    /// (`.truncated`), so a caller never gets less than it asked for.
    public static func openOrCreate(
        _ name: SegmentName, size: Int, mode: FileMode = 0o600, kind: SegmentKind = .raw, kindVersion: UInt32 = 1,
        lifetime: Lifetime = .removedWithCreator, timeout: Duration = .seconds(2),
        initialize: SegmentInitializer? = nil
    ) throws(SegmentError) -> SharedMemorySegment {
        _ = try SegmentSize.total(forData: size)
        for _ in 0..<16 {
            do throws(SegmentError) {
                let segment = try open(name, kind: kind, timeout: timeout)
                guard segment.info.dataSize >= size else {
                    throw SegmentError.truncated(name: name.name, actualSize: segment.info.dataSize, expectedSize: size)
                }
                return segment
            } catch .notFound {
                do throws(SegmentError) {
                    return try create(name, size: size, mode: mode, kind: kind, kindVersion: kindVersion,
                                      lifetime: lifetime, initialize: initialize)
                } catch .alreadyExists {
                    continue // lost the race: open what the winner made
                }
            }
        }
        throw .system(operation: "open-or-create", name: name.name, .tryAgain)
    }

    // MARK: Unlink and inspect

    /// Removes the name (`shm_unlink(3)`) after marking the header retired.
    /// Processes that have it mapped keep their mappings.
    ///
    /// - Throws: `.notFound` if the name is already gone (double unlink).
    public func unlink() throws(SegmentError) {
        if unlinked.exchange(true, ordering: .relaxed) { throw .notFound(name: name.name) }
        if mapping.access == .readWrite { SegmentHeader.markRetired(mapping.unsafeBaseAddress) }
        try SharedMemorySegment.unlink(name)
    }

    private func unlinkIfStillOurs() throws(SegmentError) {
        guard !unlinked.exchange(true, ordering: .relaxed) else { return }
        var st = stat()
        guard stat(SharedMemorySegment.directory + "/" + name.fileName, &st) == 0, st.st_ino == inode else { return }
        SegmentHeader.markRetired(mapping.unsafeBaseAddress)
        try SharedMemorySegment.unlink(name)
    }

    /// Removes the segment called `name` (`shm_unlink(3)`), marking its header
    /// retired first when it is one of ours.
    public static func unlink(_ name: SegmentName) throws(SegmentError) {
        switch valueOrErrno({ shm_unlink(name.posixName) }) {
        case .success: return
        case .failure(let e) where e == .notFound: throw .notFound(name: name.name)
        case .failure(let e) where e == .permissionDenied || e == .notPermitted: throw .permissionDenied(name: name.name, e)
        case .failure(let e): throw .system(operation: "shm_unlink", name: name.name, e)
        }
    }

    /// True while the name in `/dev/shm` still refers to this segment (not
    /// unlinked, not replaced by a newer segment of the same name).
    public var isStillLinked: Bool {
        var st = stat()
        return stat(SharedMemorySegment.directory + "/" + name.fileName, &st) == 0 && st.st_ino == inode
    }

    /// Unlinks the name if it still refers to this segment; returns whether it did.
    @discardableResult
    public func unlinkIfStillLinked() -> Bool {
        guard isStillLinked else { return false }
        if mapping.access == .readWrite { SegmentHeader.markRetired(mapping.unsafeBaseAddress) }
        unlinked.store(true, ordering: .relaxed)
        return (try? SharedMemorySegment.unlink(name)) != nil
    }

    /// True if an object with this name exists in `/dev/shm`.
    public static func exists(_ name: SegmentName) -> Bool {
        var st = stat()
        return stat(directory + "/" + name.fileName, &st) == 0
    }

    /// The descriptor of the segment, for `fstat` or passing to another
    /// process. Owned by this handle: do not close it.
    public var unsafeFileDescriptor: Int32 { fd }

    /// Throws `.truncated` if the object was shrunk below the mapped size
    /// (`fstat(2)`), or an access already hit a page past its new end (the
    /// SIGBUS guard gave it zeros: `MemoryMapping.truncatedPages`). One
    /// syscall: for slow paths.
    public func checkIntact() throws(SegmentError) {
        var st = stat()
        let size = fstat(fd, &st) == 0 ? Int(st.st_size) : -1
        if (size >= 0 && size < mapping.length) || mapping.truncatedPages > 0 {
            throw .truncated(name: name.name, actualSize: max(size, 0), expectedSize: mapping.length)
        }
    }
}

extension MappingError {
    /// The errno inside a mapping error, for callers that rewrap it.
    var errno: Errno {
        switch self {
        case .open(_, let e), .stat(_, let e), .map(_, _, let e), .resize(_, _, _, let e), .remap(_, let e),
             .sync(let e), .advise(_, let e), .lock(_, let e): e
        default: .invalidArgument
        }
    }
}
