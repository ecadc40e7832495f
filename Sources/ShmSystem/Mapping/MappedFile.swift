#if canImport(Glibc)
import Glibc
#endif
import CShm

/// A file, or part of one, whose contents are read and written through memory.
///
/// ```swift
/// let file = try MappedFile(path: "data.bin", access: .readWrite)
/// file.bytes[0] += 1            // bounds-checked, reaches the file (MAP_SHARED)
/// try file.sync()               // msync(MS_SYNC)
/// ```
///
/// **Offsets.** `mmap(2)` needs page-aligned file offsets. `MappedFile`
/// accepts any offset: it maps from the page boundary below it and `bytes`
/// starts exactly at the offset you asked for.
///
/// **No SIGBUS.** A range that reaches past the end of the file is refused
/// with `MappingError.beyondEndOfFile` instead of being mapped (touching such
/// pages raises SIGBUS). Another process truncating the file *after* it was
/// mapped does not kill this one either: the SIGBUS guard
/// (`MemoryMapping.truncatedPages`) gives the faulting access a zero page,
/// and `checkIntact()` — which any slow path may call — throws
/// `.truncated(path:mappedBytes:fileSize:)` naming the file, the size that
/// was mapped and the size it has now.
///
/// **Growing.** `grow(to:)` extends the file (`ftruncate` + `posix_fallocate`)
/// and the mapping (`mremap`). Views taken before growing stay valid: the
/// mapping is moved only when nothing else refers to it, and otherwise the
/// larger mapping is made beside it.
///
/// A `MappedFile` is not thread-safe to grow while other threads use it.
public final class MappedFile {
    /// The file's path, as given.
    public let path: String
    /// How the file is mapped.
    public let access: MappingAccess
    /// The file offset `bytes` starts at.
    public let offset: Int
    /// The current mapping (changes when `grow` has to map anew).
    public private(set) var mapping: MemoryMapping

    private let fd: Int32
    /// `offset` minus the page-aligned offset actually passed to mmap.
    private let pageDelta: Int

    /// Whether `path` still names the mapped file (`fstat` and `stat` agree
    /// on the inode, and it has a link): false once another process deleted
    /// it, or put another file in its place.
    package var isStillNamed: Bool { FileSystem.descriptor(fd, isNamed: path) }

    /// Maps `length` bytes of the file at `path` starting at `offset`, or
    /// everything from `offset` to the end when `length` is nil.
    ///
    /// - Parameters:
    ///   - populate: pre-fault the pages (`MAP_POPULATE`) so the first
    ///     accesses do not page-fault.
    /// - Throws: `MappingError.beyondEndOfFile` if the range is not inside
    ///   the file; `.open`, `.map` with the errno otherwise.
    public init(path: String, access: MappingAccess = .readOnly, offset: Int = 0, length: Int? = nil, populate: Bool = false) throws(MappingError) {
        guard offset >= 0 else {
            throw .invalidRange(path: path, offset: offset, length: length ?? 0, reason: "negative offset")
        }
        if let length, length <= 0 {
            throw .invalidRange(path: path, offset: offset, length: length, reason: "length must be positive")
        }
        let fd: Int32
        switch valueOrErrno({ open(path, access.openFlags | O_CLOEXEC) }) {
        case .success(let value): fd = value
        case .failure(let e): throw .open(path: path, e)
        }
        do throws(MappingError) {
            let fileSize = try MappedFile.size(of: fd, path: path)
            let wanted = length ?? (fileSize - offset)
            if wanted <= 0 && length == nil {
                if fileSize == 0 { throw MappingError.emptyFile(path: path) }
                throw MappingError.beyondEndOfFile(path: path, fileSize: fileSize, offset: offset, length: 0)
            }
            let (end, overflow) = offset.addingReportingOverflow(wanted)
            guard !overflow else {
                throw MappingError.invalidRange(path: path, offset: offset, length: wanted, reason: "offset + length overflows")
            }
            guard end <= fileSize else {
                throw MappingError.beyondEndOfFile(path: path, fileSize: fileSize, offset: offset, length: wanted)
            }
            let aligned = roundDown(offset, toMultipleOf: pageSize)
            self.mapping = try MemoryMapping.map(fd: fd, offset: aligned, length: end - aligned,
                                                 access: access, label: path, populate: populate)
            self.pageDelta = offset - aligned
        } catch {
            closeOwnedDescriptor(fd)
            throw error
        }
        self.fd = fd
        self.path = path
        self.access = access
        self.offset = offset
    }

    /// Creates (or opens) the file at `path`, makes it at least `size` bytes
    /// with its blocks reserved (`posix_fallocate`, so writes through the
    /// mapping cannot fail for lack of space later), and maps all of it
    /// read-write.
    ///
    /// - Parameter exclusive: fail with `EEXIST` if the file exists (`O_EXCL`).
    public static func create(path: String, size: Int, mode: FileMode = 0o644, exclusive: Bool = false, populate: Bool = false) throws(MappingError) -> MappedFile {
        guard size > 0 else { throw .invalidRange(path: path, offset: 0, length: size, reason: "size must be positive") }
        var flags = O_RDWR | O_CREAT | O_CLOEXEC
        if exclusive { flags |= O_EXCL }
        let fd: Int32
        switch valueOrErrno({ open(path, flags, mode) }) {
        case .success(let value): fd = value
        case .failure(let e): throw .open(path: path, e)
        }
        defer { closeOwnedDescriptor(fd) }
        let current = try MappedFile.size(of: fd, path: path)
        if current < size {
            if case .failure(let e) = zeroOrErrno({ posix_fallocate(fd, off_t(current), off_t(size - current)) }) {
                // Filesystems without fallocate support still get the size.
                if e == .notSupported, case .success = valueOrErrno({ ftruncate(fd, off_t(size)) }) {
                } else {
                    _ = ftruncate(fd, off_t(current))
                    throw .resize(path: path, from: current, to: size, e)
                }
            }
        }
        return try MappedFile(path: path, access: .readWrite, populate: populate)
    }

    deinit { closeOwnedDescriptor(fd) }

    /// The mapped bytes, starting exactly at `offset`.
    public var bytes: MappedBytes {
        MappedBytes(owner: mapping, offset: pageDelta, count: mapping.length - pageDelta)
    }

    /// Number of mapped bytes (from `offset`).
    public var count: Int { mapping.length - pageDelta }

    /// The file's current size on disk (`fstat(2)`).
    public func fileSize() throws(MappingError) -> Int { try MappedFile.size(of: fd, path: path) }

    /// Throws `.truncated` if the file is now shorter than the mapped range
    /// (`fstat(2)`), or if an access already hit a page past its end (the
    /// SIGBUS guard gave it zeros). One syscall: for slow paths.
    public func checkIntact() throws(MappingError) {
        let size = try fileSize()
        let mappedEnd = offset + count
        if size < mappedEnd || mapping.truncatedPages > 0 {
            throw .truncated(path: path, mappedBytes: mappedEnd, fileSize: size)
        }
    }

    /// Grows the file to `newSize` bytes and the mapping to cover
    /// `offset..<newSize` (`ftruncate(2)`/`posix_fallocate(3)`, then `mremap(2)`).
    ///
    /// - Parameter reserve: reserve the new blocks with `posix_fallocate`
    ///   (default) so later writes through memory cannot hit a full disk.
    public func grow(to newSize: Int, reserve: Bool = true) throws(MappingError) {
        guard access == .readWrite else { throw .readOnly(path: path) }
        let current = try fileSize()
        let mappedEnd = offset + count
        guard newSize > mappedEnd else { throw .notGrowing(path: path, current: mappedEnd, requested: newSize) }
        if newSize > current {
            let result = reserve
                ? zeroOrErrno({ posix_fallocate(fd, off_t(current), off_t(newSize - current)) })
                : valueOrErrno({ ftruncate(fd, off_t(newSize)) }).map { _ in () }
            if case .failure(let e) = result {
                _ = ftruncate(fd, off_t(current))
                throw .resize(path: path, from: current, to: newSize, e)
            }
        }
        let newLength = newSize - offset + pageDelta
        if isKnownUniquelyReferenced(&mapping) {
            // Nobody else can see the old address: let the kernel move it.
            let old = mapping
            guard let moved = cshm_mremap_maymove(old.unsafeBaseAddress, old.length, newLength),
                  moved != cshm_map_failed() else {
                throw .remap(path: path, Errno.current)
            }
            old.transferOwnership()
            mapping = MemoryMapping(base: moved, length: newLength, access: access, label: path, guarded: true)
        } else {
            // Views of the old mapping exist: keep it, map the larger range beside it.
            mapping = try MemoryMapping.map(fd: fd, offset: offset - pageDelta, length: newLength, access: access, label: path)
        }
    }

    /// `msync(2)` of the whole mapping.
    public func sync(_ mode: SyncMode = .synchronous) throws(MappingError) { try bytes.sync(mode) }

    /// `madvise(2)` on the whole mapping.
    public func advise(_ advice: MappingAdvice) throws(MappingError) { try bytes.advise(advice) }

    /// `mlock(2)` of the whole mapping.
    public func lock() throws(MappingError) { try bytes.lock() }

    /// `munlock(2)` of the whole mapping.
    public func unlock() throws(MappingError) { try bytes.unlock() }

    static func size(of fd: Int32, path: String) throws(MappingError) -> Int {
        var st = stat()
        if case .failure(let e) = valueOrErrno({ fstat(fd, &st) }) { throw .stat(path: path, e) }
        return Int(st.st_size)
    }
}
