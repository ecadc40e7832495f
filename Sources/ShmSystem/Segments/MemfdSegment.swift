#if canImport(Glibc)
import Glibc
#endif
import CShm

/// An anonymous segment backed by `memfd_create(2)`: no name in any
/// filesystem, shared by passing its descriptor — inherited by a spawned
/// child (`ChildProcess`) or sent over a `UnixSocket` (`SCM_RIGHTS`).
///
/// After initialization the creator seals the size (`F_SEAL_SHRINK`,
/// `F_SEAL_GROW`, `F_SEAL_SEAL`), so a receiver knows no process can ever
/// shrink it under its mapping (which would raise SIGBUS). A received
/// descriptor without `F_SEAL_SHRINK` is refused unless the caller opts out.
public final class MemfdSegment: Segment {
    /// The label given at creation (shown in `/proc/PID/fd` as `memfd:LABEL`).
    public let label: String
    public let mapping: MemoryMapping
    public let info: SegmentHeader.Info
    /// What backs the data area.
    public let pageBacking: PageBacking
    private let fd: Int32

    private init(label: String, fd: Int32, mapping: MemoryMapping, info: SegmentHeader.Info, pageBacking: PageBacking) {
        self.label = label
        self.fd = fd
        self.mapping = mapping
        self.info = info
        self.pageBacking = pageBacking
    }

    deinit { closeOwnedDescriptor(fd) }

    /// Seals of a memfd (`fcntl(F_GET_SEALS)`).
    public struct Seals: OptionSet, Sendable {
        public let rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }
        /// `F_SEAL_SEAL`: no further seals may be added or removed.
        public static let seal = Seals(rawValue: cshm_seal_seal())
        /// `F_SEAL_SHRINK`: the size can never decrease.
        public static let shrink = Seals(rawValue: cshm_seal_shrink())
        /// `F_SEAL_GROW`: the size can never increase.
        public static let grow = Seals(rawValue: cshm_seal_grow())
        /// `F_SEAL_WRITE`: the contents can never change.
        public static let write = Seals(rawValue: cshm_seal_write())
    }

    /// Creates an anonymous segment with `size` bytes of data area.
    ///
    /// `memfd_create(MFD_CLOEXEC|MFD_ALLOW_SEALING[|MFD_HUGETLB])`,
    /// `posix_fallocate` (capacity reserved now), `mmap`, header,
    /// `initialize`, ready, then `F_ADD_SEALS` (shrink, grow, seal).
    public static func create(
        label: String, size: Int, kind: SegmentKind = .raw, kindVersion: UInt32 = 1,
        hugePages: HugePagePolicy = .none, populate: Bool = false, initialize: SegmentInitializer? = nil
    ) throws(SegmentError) -> MemfdSegment {
        guard !label.isEmpty, label.utf8.count <= 200, !label.contains("/") else {
            throw .invalidName(label, reason: "a memfd label is 1…200 bytes without '/'")
        }
        var total = try SegmentSize.total(forData: size)
        let support = HugePageSupport.current
        var backing = PageBacking.normal
        var fd: Int32 = -1
        if hugePages == .required || hugePages == .preferred {
            let hugeTotal = roundUp(total, toMultipleOf: support.hugePageSize)
            fd = cshm_memfd_create(label, cshm_mfd_cloexec() | cshm_mfd_allow_sealing() | cshm_mfd_hugetlb())
            if fd >= 0 {
                do {
                    try SharedMemorySegment.reserve(fd: fd, bytes: hugeTotal, name: label)
                    total = hugeTotal
                    backing = .hugeTLB(pageSize: support.hugePageSize)
                } catch {
                    closeOwnedDescriptor(fd)
                    fd = -1
                    if hugePages == .required {
                        throw .hugePagesUnavailable(name: label, reason: support.reservedShortfall(for: hugeTotal) ?? "\(error)")
                    }
                }
            } else if hugePages == .required {
                throw .hugePagesUnavailable(name: label, reason: "memfd_create(MFD_HUGETLB) failed (\(Errno.current)); " +
                                            (support.reservedShortfall(for: hugeTotal) ?? support.description))
            }
        }
        if fd < 0 {
            fd = cshm_memfd_create(label, cshm_mfd_cloexec() | cshm_mfd_allow_sealing())
            guard fd >= 0 else { throw .system(operation: "memfd_create", name: label, .current) }
            do {
                try SharedMemorySegment.reserve(fd: fd, bytes: total, name: label)
            } catch {
                closeOwnedDescriptor(fd)
                throw error
            }
        }
        do throws(SegmentError) {
            let mapping: MemoryMapping
            do {
                mapping = try MemoryMapping.map(fd: fd, offset: 0, length: total, access: .readWrite, label: label,
                                                populate: populate, extraFlags: backing == .normal ? 0 : MAP_HUGETLB)
            } catch {
                throw SegmentError.system(operation: "mmap", name: label, error.errno)
            }
            if backing == .normal && hugePages != .none {
                backing = mapping.adviseTransparentHugePages(shared: true, support: support, range: SegmentHeader.size..<total)
            }
            SegmentHeader.initialize(at: mapping.unsafeBaseAddress, totalSize: total, kind: kind, kindVersion: kindVersion,
                                     name: label, creator: .current, creatorUID: getuid())
            let data = MappedBytes(owner: mapping, offset: SegmentHeader.size, count: total - SegmentHeader.size)
            do { try initialize?(data) } catch { throw initializerFailed(error, name: label) }
            SegmentHeader.publishReady(mapping.unsafeBaseAddress)
            let seals = Seals.shrink.rawValue | Seals.grow.rawValue | Seals.seal.rawValue
            if case .failure(let e) = valueOrErrno({ cshm_add_seals(fd, seals) }) {
                throw SegmentError.system(operation: "fcntl(F_ADD_SEALS)", name: label, e)
            }
            let info = try SegmentHeader.validate(mapping.unsafeBaseAddress, objectSize: total, name: label)
            return MemfdSegment(label: label, fd: fd, mapping: mapping, info: info, pageBacking: backing)
        } catch {
            closeOwnedDescriptor(fd)
            throw error
        }
    }

    /// Opens a memfd segment from a descriptor received from another process,
    /// taking ownership of the descriptor (it is closed on failure too).
    ///
    /// - Parameter requireSeals: refuse a memfd whose size is not sealed
    ///   against shrinking (default). Without that seal the sender could
    ///   truncate it and crash this process with SIGBUS.
    public init(adopting fd: Int32, access: MappingAccess = .readWrite, kind: SegmentKind? = nil,
                requireSeals: Bool = true, timeout: Duration = .seconds(2)) throws(SegmentError) {
        let label = "memfd(fd \(fd))"
        do throws(SegmentError) {
            if requireSeals {
                let seals = Seals(rawValue: cshm_get_seals(fd))
                if seals.rawValue < 0 || !seals.contains(.shrink) {
                    throw SegmentError.notSealed(name: label, missing: "shrinking (F_SEAL_SHRINK)")
                }
            }
            var st = stat()
            if case .failure(let e) = valueOrErrno({ fstat(fd, &st) }) {
                throw SegmentError.system(operation: "fstat", name: label, e)
            }
            let size = Int(st.st_size)
            guard size >= SegmentHeader.size else {
                throw SegmentError.truncated(name: label, actualSize: size, expectedSize: SegmentHeader.size)
            }
            let mapping: MemoryMapping
            do {
                mapping = try MemoryMapping.map(fd: fd, offset: 0, length: size, access: access, label: label)
            } catch {
                throw SegmentError.system(operation: "mmap", name: label, error.errno)
            }
            let info = try SegmentHeader.waitUntilReady(mapping.unsafeBaseAddress, objectSize: size, name: label,
                                                        timeoutNanoseconds: timeout.nanoseconds)
            if let kind, kind != info.kind {
                throw SegmentError.kindMismatch(name: label, expected: kind.rawValue, found: info.kind.rawValue)
            }
            self.label = info.recordedName
            self.fd = fd
            self.mapping = mapping
            self.info = info
            self.pageBacking = .normal
        } catch {
            closeOwnedDescriptor(fd)
            throw error
        }
    }

    /// Receives a segment's descriptor from `socket` and opens it.
    public static func receive(from socket: UnixSocket, access: MappingAccess = .readWrite, kind: SegmentKind? = nil,
                               timeout: Duration = .seconds(5)) throws(SegmentError) -> MemfdSegment {
        let received: (descriptor: Int32, message: [UInt8])
        do {
            received = try socket.receiveDescriptor(timeout: timeout)
        } catch {
            throw .system(operation: "receive descriptor (\(error))", name: "memfd", errnoOf(error))
        }
        return try MemfdSegment(adopting: received.descriptor, access: access, kind: kind)
    }

    /// Sends this segment's descriptor over `socket` (`SCM_RIGHTS`).
    public func send(over socket: UnixSocket) throws(SocketError) {
        try socket.send(descriptor: fd, message: Array(label.utf8))
    }

    /// The seals currently on the descriptor.
    public var seals: Seals { Seals(rawValue: max(0, cshm_get_seals(fd))) }

    /// The descriptor, owned by this segment (for `ChildProcess` inheritance).
    public var unsafeFileDescriptor: Int32 { fd }
}

func errnoOf(_ error: SocketError) -> Errno {
    switch error {
    case .system(_, _, let e): e
    case .timedOut: .timedOut
    case .closed: Errno(rawValue: ECONNRESET)
    case .noDescriptor: Errno(rawValue: EPROTO)
    case .pathTooLong: .nameTooLong
    }
}
