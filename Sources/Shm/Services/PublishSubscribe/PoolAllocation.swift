/// How a sender's pool gets its shared memory: all of it when the port is
/// created, or as loans need it.
///
/// A pool must be able to hold every sample its service's limits allow in
/// flight at once (`PublishSubscribeConfig.chunksPerPublisher`: every
/// subscriber's buffer and borrow allowance full, plus history and loans),
/// each of the service's maximum size. Reserving that up front costs
/// `chunks × maximum size` of /dev/shm — 164 chunks × 8 MB = 1.3 GB for a
/// frame service with the default limits — while a running pipeline
/// typically has a handful of frames in flight. A growing pool starts small
/// and adds segments (`svc.<service>.p<id>-<k>`, each `posix_fallocate`d
/// when it is created, so a full /dev/shm is a typed error from the loan
/// that needed it, never SIGBUS later) when a loan finds every chunk in use
/// or asks for more bytes than its chunks hold. Memory then follows the most
/// samples that were ever in flight at once, within a factor of two, and
/// never exceeds what `.reserved` would take. Growing costs syscalls
/// (`shm_open`, `ftruncate`, `fallocate`, `mmap`; a subscriber maps the new
/// segment when the first sample from it arrives) on the loans that grow;
/// once grown, sending and receiving are exactly as fast (BENCHMARKS.md).
public struct PoolAllocation: Hashable, Sendable, CustomStringConvertible {
    enum Kind: Hashable, Sendable {
        case reserved
        case automatic
        case growing(initialChunks: Int, initialLength: Int)
    }

    let kind: Kind

    /// Every chunk the service's limits allow in flight, each of the
    /// service's maximum size, reserved when the port is created: no loan
    /// ever creates a segment (no syscall after creation, even in warm-up).
    public static let reserved = PoolAllocation(kind: .reserved)

    /// A pool that starts with `initialChunks` chunks of `initialLength`
    /// elements and grows on demand: to more chunks (doubling) when a loan
    /// finds every chunk in use, and to larger chunks (the next power of two
    /// of the bytes asked for, at most the service's maximum) when a loan
    /// asks for more than the chunks hold — segments of smaller chunks are
    /// then retired, and unlinked as soon as their last sample comes back.
    /// - Precondition: `initialChunks` ≥ 1, `initialLength` ≥ 1.
    public static func growing(initialChunks: Int = 8, initialLength: Int = 1) -> PoolAllocation {
        precondition(initialChunks >= 1 && initialLength >= 1, "a growing pool starts with at least one chunk of one element")
        return PoolAllocation(kind: .growing(initialChunks: initialChunks, initialLength: initialLength))
    }

    /// `.growing()` when reserving would take more than `threshold` bytes
    /// of /dev/shm, `.reserved` otherwise: small pools cost little up front
    /// and never grow; large ones follow what is in flight. The default of
    /// every publisher, client and server.
    public static let automatic = PoolAllocation(kind: .automatic)

    /// Above this many bytes reserved up front (1 MiB), `.automatic` grows instead.
    public static let threshold = 1 << 20

    public var description: String {
        switch kind {
        case .reserved: "reserved"
        case .automatic: "automatic"
        case .growing(let chunks, let length): "growing from \(chunks) chunks of \(length) elements"
        }
    }

    /// What `.automatic` means for a pool that would reserve `reservedBytes`.
    func resolved(reservedBytes: Int) -> PoolAllocation {
        guard kind == .automatic else { return self }
        return reservedBytes > PoolAllocation.threshold ? .growing() : .reserved
    }
}

/// What a sender's pool holds in /dev/shm now (`Publisher.footprint`;
/// `shm service` shows the same per port).
public struct PoolFootprint: Hashable, Sendable {
    /// Segments of the pool that are linked now.
    public let segments: Int
    /// Their size in /dev/shm, headers included.
    public let bytes: Int
    /// Chunks in those segments.
    public let chunks: Int
    /// Bytes a chunk that may be loaned now holds.
    public let chunkCapacity: Int
    /// Segments added after the first, over the pool's life.
    public let grown: Int
    /// Segments of smaller chunks retired and unlinked, over the pool's life.
    public let retired: Int
}
