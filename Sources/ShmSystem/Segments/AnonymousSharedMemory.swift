#if canImport(Glibc)
import Glibc
#endif
import CShm

/// Anonymous shared memory (`mmap(MAP_SHARED|MAP_ANONYMOUS)`).
///
/// It has no name and no descriptor: the only other processes that see it
/// are children created by `fork(2)`, which inherit the mapping. A Swift
/// program should rarely fork without exec, so for spawned (exec'd) children
/// use `MemfdSegment` and pass its descriptor instead (`ChildProcess` can
/// inherit it, or send it over a `UnixSocket`).
public enum AnonymousSharedMemory {
    /// Maps `size` bytes of zeroed shared memory.
    ///
    /// - Returns: the mapping and what backs it (see `HugePagePolicy`).
    /// - Throws: `MappingError.hugePagesUnavailable` for `.required` without
    ///   reserved huge pages, `.map` with the errno otherwise.
    public static func map(size: Int, hugePages: HugePagePolicy = .none, populate: Bool = false) throws(MappingError) -> (MemoryMapping, PageBacking) {
        guard size > 0 else { throw .invalidRange(path: "anonymous", offset: 0, length: size, reason: "size must be positive") }
        let support = HugePageSupport.current
        var flags = MAP_SHARED | MAP_ANONYMOUS
        if populate { flags |= MAP_POPULATE }
        if hugePages == .required || hugePages == .preferred {
            let length = roundUp(size, toMultipleOf: support.hugePageSize)
            if let base = mmap(nil, length, PROT_READ | PROT_WRITE, flags | MAP_HUGETLB, -1, 0), base != cshm_map_failed() {
                return (MemoryMapping(base: base, length: length, access: .readWrite, label: "anonymous", usesHugeTLB: true),
                        .hugeTLB(pageSize: support.hugePageSize))
            }
            let e = Errno.current
            if hugePages == .required {
                throw .hugePagesUnavailable(reason: "MAP_HUGETLB of \(ByteCount.format(length)) failed (\(e)): " +
                                            (support.reservedShortfall(for: length) ?? support.description))
            }
        }
        guard let base = mmap(nil, size, PROT_READ | PROT_WRITE, flags, -1, 0), base != cshm_map_failed() else {
            throw .map(path: "anonymous", length: size, Errno.current)
        }
        let mapping = MemoryMapping(base: base, length: size, access: .readWrite, label: "anonymous")
        if hugePages != .none {
            return (mapping, mapping.adviseTransparentHugePages(shared: true, support: support))
        }
        return (mapping, .normal)
    }
}
