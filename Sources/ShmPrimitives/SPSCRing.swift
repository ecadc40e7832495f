import Synchronization
import ShmSystem

/// A single-producer single-consumer ring of variable-length byte messages
/// in shared memory.
///
/// ```text
/// offset  line  contents (written by)
///    0    0     header (creator, once): magic "SPSC", version,
///                 capacity, maxMessage, regionSize, checksum
///  128    1     tail: UInt64, bytes ever written (producer)
///  136          producer role slot: packed ProcessIdentity (producer)
///  256    2     head: UInt64, bytes ever consumed (consumer)
///  264          consumer role slot (consumer)
///  272          lostRecords: UInt64, corrupt records skipped (consumer)
///  384    3     data parker: seq, sleepers — the consumer sleeps here
///  512    4     space parker: seq, sleepers — the producer sleeps here
///  640          data[capacity]  (capacity a power of two)
///
/// record (8-byte aligned, never split across the end of data):
///   +0 length  UInt32   payload bytes
///   +4 type    UInt32   1 message, 2 padding to the end of data
///   +8 payload[length], zero to 7 bytes of alignment
/// ```
///
/// Producer-owned and consumer-owned words live on separate 128-byte lines,
/// and each side keeps a private copy of the other's index, re-reading the
/// shared one only when its copy says the ring is full (producer) or empty
/// (consumer). A record becomes visible with one store of `tail`; it is
/// freed with one store of `head`. A message that would not fit before the
/// end of the data area is preceded by a padding record and written at
/// offset 0, so every payload is contiguous and can be used in place.
///
/// Nothing read from shared memory is trusted: positions are checked
/// against each other and the capacity, and every record's type and length
/// against the bytes available. A bad record costs the consumer that record
/// (`QueueError.corruptRecord`, after which it skips to the producer's
/// position); bad positions are reported as `corruptIndices` on every call.
public final class SPSCRing: @unchecked Sendable {
    static let magic = SegmentKind("SPSC")
    static let version: UInt32 = 1
    static let headerFields = 3 // capacity, maxMessage, regionSize
    static let tailOffset = 128, producerSlotOffset = 136
    static let headOffset = 256, consumerSlotOffset = 264, lostOffset = 272
    static let dataParkerOffset = 384, spaceParkerOffset = 512
    static let dataOffset = 640
    static let recordHeader = 8
    static let typeMessage: UInt32 = 1, typePadding: UInt32 = 2

    /// The memory the ring lives in (keeps the mapping alive).
    public let region: MappedBytes
    /// Whatever owns the memory (a segment), kept alive as long as this is.
    package let anchor: AnyObject?
    /// Data bytes (a power of two).
    public let capacity: Int
    /// Largest payload accepted (at most `capacity / 2 - 8`, so any message
    /// fits whatever the current position).
    public let maxMessageSize: Int

    let mask: UInt64
    let base: UnsafeMutableRawPointer
    let data: UnsafeMutableRawPointer
    let tail: UnsafeMutablePointer<Atomic<UInt64>>
    let head: UnsafeMutablePointer<Atomic<UInt64>>
    let lost: UnsafeMutablePointer<Atomic<UInt64>>
    let producerSlot: RoleSlot
    let consumerSlot: RoleSlot
    let dataParker: Parker
    let spaceParker: Parker

    /// Bytes of region a ring of `capacity` data bytes needs.
    public static func requiredSize(capacity: Int) -> Int { dataOffset + capacity }

    /// The largest power-of-two capacity that fits in `regionSize` bytes.
    public static func capacity(fitting regionSize: Int) -> Int {
        let room = regionSize - dataOffset
        guard room >= 64 else { return 0 }
        return 1 << (Int.bitWidth - 1 - room.leadingZeroBitCount)
    }

    /// Lays out a new, empty ring at the start of `region`.
    ///
    /// - Parameters:
    ///   - capacity: data bytes, a power of two from 64 to 2^40.
    ///   - maxMessageSize: defaults to (and may not exceed) `capacity/2 - 8`.
    public static func initialize(_ region: MappedBytes, capacity: Int, maxMessageSize: Int? = nil, anchor: AnyObject? = nil) throws(QueueError) -> SPSCRing {
        guard capacity >= 64, capacity <= 1 << 40, capacity & (capacity - 1) == 0 else {
            throw .invalidConfiguration("capacity \(capacity) must be a power of two from 64 to 2^40")
        }
        let limit = capacity / 2 - recordHeader
        let maximum = maxMessageSize ?? limit
        guard maximum > 0, maximum <= limit else {
            throw .invalidConfiguration("maxMessageSize \(maximum) must be 1…\(limit) for a capacity of \(capacity)")
        }
        let needed = requiredSize(capacity: capacity)
        guard region.count >= needed else { throw .regionTooSmall(needed: needed, available: region.count) }
        region.view(0..<dataOffset).fill(with: 0)
        LayoutHeader.write(region.unsafeBaseAddress, magic: magic, version: version,
                           fields: [UInt64(capacity), UInt64(maximum), UInt64(needed)])
        return try SPSCRing(attaching: region, anchor: anchor)
    }

    /// Attaches to a ring another process laid out, validating its header.
    public init(attaching region: MappedBytes, anchor: AnyObject? = nil) throws(QueueError) {
        let fields = try LayoutHeader.read(region, magic: SPSCRing.magic, version: SPSCRing.version,
                                           count: SPSCRing.headerFields, what: "SPSC ring")
        let capacity = fields[0], maximum = fields[1], size = fields[2]
        guard capacity >= 64, capacity <= 1 << 40, capacity & (capacity - 1) == 0,
              size == UInt64(SPSCRing.requiredSize(capacity: Int(capacity))),
              maximum > 0, maximum <= capacity / 2 - UInt64(SPSCRing.recordHeader) else {
            throw .invalidLayout("inconsistent ring header: capacity \(capacity), maxMessage \(maximum), size \(size)")
        }
        guard Int(size) <= region.count else { throw .regionTooSmall(needed: Int(size), available: region.count) }
        precondition(Int(bitPattern: region.unsafeBaseAddress) % 128 == 0, "ring region must be 128-byte aligned")
        self.region = region
        self.anchor = anchor
        self.capacity = Int(capacity)
        self.maxMessageSize = Int(maximum)
        self.mask = capacity - 1
        base = region.unsafeBaseAddress
        data = base + SPSCRing.dataOffset
        tail = UnsafeMutablePointer(OpaquePointer(base + SPSCRing.tailOffset))
        head = UnsafeMutablePointer(OpaquePointer(base + SPSCRing.headOffset))
        lost = UnsafeMutablePointer(OpaquePointer(base + SPSCRing.lostOffset))
        producerSlot = RoleSlot(base + SPSCRing.producerSlotOffset)
        consumerSlot = RoleSlot(base + SPSCRing.consumerSlotOffset)
        dataParker = Parker(base + SPSCRing.dataParkerOffset)
        spaceParker = Parker(base + SPSCRing.spaceParkerOffset)
    }

    /// Becomes the ring's producer. Fails with `.roleTaken` while another
    /// live process is the producer; takes over from a dead one.
    public func producer(waitStrategy: WaitStrategy = .default) throws(QueueError) -> Producer {
        try Producer(ring: self, waitStrategy: waitStrategy)
    }

    /// Becomes the ring's consumer (same rules as `producer`).
    public func consumer(waitStrategy: WaitStrategy = .default) throws(QueueError) -> Consumer {
        try Consumer(ring: self, waitStrategy: waitStrategy)
    }

    /// Bytes written and not yet consumed (a snapshot; 0 if the positions are corrupt).
    public var usedBytes: Int {
        let t = tail.pointee.load(ordering: .relaxed), h = head.pointee.load(ordering: .relaxed)
        return t >= h && t - h <= UInt64(capacity) ? Int(t - h) : 0
    }

    /// Corrupt records the consumer skipped.
    public var lostRecords: UInt64 { lost.pointee.load(ordering: .relaxed) }

    /// The processes holding the roles, if any.
    public var producerProcess: ProcessIdentity? { producerSlot.holder }
    public var consumerProcess: ProcessIdentity? { consumerSlot.holder }

    @inline(__always)
    static func align8(_ value: Int) -> Int { (value + 7) & ~7 }

    @inline(__always)
    func positionsAreSane(head h: UInt64, tail t: UInt64) -> Bool {
        t >= h && t &- h <= UInt64(capacity)
    }
}
