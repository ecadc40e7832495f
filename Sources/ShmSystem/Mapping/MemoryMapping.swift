#if canImport(Glibc)
import Glibc
#endif
import CShm

/// The owner of one `mmap(2)` mapping. The mapping is unmapped exactly once,
/// by `munmap(2)` in `deinit`, when the last reference goes away.
///
/// Why a class and not a `~Copyable` struct: every view of the memory
/// (`MappedBytes`, rings, queues, services) holds a strong reference to its
/// owner, so the memory cannot be unmapped while anything can still reach it.
/// There is deliberately no `unmap()` method; release the references instead.
///
/// The mapping itself is immutable (address and length never change), so the
/// owner is `Sendable`. The *contents* are shared memory: concurrent access
/// from several threads or processes needs the synchronization of the layer
/// above (atomics, futexes, rings).
public final class MemoryMapping: @unchecked Sendable {
    /// Start of the mapping (page-aligned).
    public let unsafeBaseAddress: UnsafeMutableRawPointer
    /// Length of the mapping in bytes.
    public let length: Int
    /// How the memory is mapped.
    public let access: MappingAccess
    /// What the memory is (a path, a segment name), for messages.
    public let label: String
    /// True when the mapping is backed by reserved huge pages (`MAP_HUGETLB`).
    public let usesHugeTLB: Bool
    /// How the memory is given back: `munmap(2)`, or `shmdt(2)` for System V.
    package let release: Release

    package enum Release: Sendable { case munmap, shmdt }

    /// Set only by `MappedFile.grow` when it `mremap`s a uniquely referenced
    /// mapping: the memory then belongs to the new owner.
    private var transferred = false

    /// This mapping's slot in the SIGBUS guard (-1: not guarded).
    private let guardSlot: Int32

    /// - Parameter guarded: the memory is a file (or shared-memory object)
    ///   another process could shrink: register it with the SIGBUS guard.
    package init(base: UnsafeMutableRawPointer, length: Int, access: MappingAccess, label: String,
                 usesHugeTLB: Bool = false, release: Release = .munmap, guarded: Bool = false) {
        self.release = release
        self.unsafeBaseAddress = base
        self.length = length
        self.access = access
        self.label = label
        self.usesHugeTLB = usesHugeTLB
        guardSlot = guarded ? cshm_sigbus_guard_register(base, length) : -1
    }

    deinit {
        cshm_sigbus_guard_unregister(guardSlot)
        guard !transferred else { return }
        let rc = release == .munmap ? munmap(unsafeBaseAddress, length) : shmdt(unsafeBaseAddress)
        precondition(rc == 0, "\(release) of \(length) bytes at \(unsafeBaseAddress) failed: \(Errno.current)")
    }

    /// Maps `length` bytes of `fd` at `offset` (`mmap(2)`). `offset` must be
    /// page-aligned; callers that accept any offset align before calling.
    package static func map(
        fd: Int32, offset: Int, length: Int, access: MappingAccess, label: String,
        populate: Bool = false, extraFlags: Int32 = 0
    ) throws(MappingError) -> MemoryMapping {
        precondition(offset % pageSize == 0, "unaligned mmap offset")
        var flags = access.sharing | extraFlags
        if populate { flags |= MAP_POPULATE }
        let base = mmap(nil, length, access.protection, flags, fd, off_t(offset))
        guard let base, base != cshm_map_failed() else {
            throw .map(path: label, length: length, Errno.current)
        }
        return MemoryMapping(base: base, length: length, access: access, label: label,
                             usesHugeTLB: extraFlags & MAP_HUGETLB != 0, guarded: true)
    }

    /// Pages of this mapping that the SIGBUS guard replaced with zero pages
    /// because the file under them was shrunk by someone (`ftruncate`) after
    /// it was mapped. 0 for an intact (or unguarded) mapping. Reading it is
    /// one atomic load; the pages stay zero, private to this process.
    ///
    /// The guard: file-backed mappings of this library are registered with a
    /// process-wide SIGBUS handler (installed on first use, chaining to the
    /// application's handler for any other fault). An access past the new
    /// end of the file gets a zero page instead of killing the process, and
    /// the owner of the mapping throws `.truncated` at its next check.
    public var truncatedPages: Int { Int(cshm_sigbus_guard_faults(guardSlot)) }

    /// Whether the SIGBUS guard covers this mapping (file-backed mappings,
    /// while fewer than 4,096 are guarded at once).
    public var isGuarded: Bool { guardSlot >= 0 }

    /// Hands the memory to a new owner after a successful `mremap`. Only
    /// valid when the caller holds the only reference.
    package func transferOwnership() { transferred = true }

    /// A bounds-checked view of the whole mapping.
    public var bytes: MappedBytes { MappedBytes(owner: self, offset: 0, count: length) }

    /// True if `address` lies inside the mapping.
    public func contains(_ address: UnsafeRawPointer) -> Bool {
        address >= UnsafeRawPointer(unsafeBaseAddress) && address < UnsafeRawPointer(unsafeBaseAddress + length)
    }
}

// MARK: - Kernel operations on a range of a mapping

extension MemoryMapping {
    /// The page-aligned span covering `range` (relative to the mapping).
    func pageSpan(_ range: Range<Int>) -> (UnsafeMutableRawPointer, Int) {
        precondition(range.lowerBound >= 0 && range.upperBound <= length, "range \(range) outside mapping of \(length) bytes")
        let start = roundDown(range.lowerBound, toMultipleOf: pageSize)
        let end = min(roundUp(range.upperBound, toMultipleOf: pageSize), roundUp(length, toMultipleOf: pageSize))
        return (unsafeBaseAddress + start, max(0, end - start))
    }

    /// Writes dirty pages of `range` back to the file (`msync(2)`).
    public func sync(_ mode: SyncMode = .synchronous, range: Range<Int>? = nil) throws(MappingError) {
        let (start, count) = pageSpan(range ?? 0..<length)
        guard count > 0 else { return }
        if case .failure(let e) = valueOrErrno({ msync(start, count, mode.flags) }) { throw .sync(e) }
    }

    /// Tells the kernel how `range` will be used (`madvise(2)`).
    public func advise(_ advice: MappingAdvice, range: Range<Int>? = nil) throws(MappingError) {
        let (start, count) = pageSpan(range ?? 0..<length)
        guard count > 0 else { return }
        if case .failure(let e) = valueOrErrno({ madvise(start, count, advice.rawValue) }) {
            throw .advise(advice.description, e)
        }
    }

    /// Locks the pages of `range` in RAM (`mlock(2)`), faulting them in.
    public func lock(range: Range<Int>? = nil) throws(MappingError) {
        let (start, count) = pageSpan(range ?? 0..<length)
        guard count > 0 else { return }
        if case .failure(let e) = valueOrErrno({ mlock(start, count) }) { throw .lock(length: count, e) }
    }

    /// Undoes `lock` (`munlock(2)`).
    public func unlock(range: Range<Int>? = nil) throws(MappingError) {
        let (start, count) = pageSpan(range ?? 0..<length)
        guard count > 0 else { return }
        if case .failure(let e) = valueOrErrno({ munlock(start, count) }) { throw .lock(length: count, e) }
    }
}
