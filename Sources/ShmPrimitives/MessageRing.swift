import Synchronization
import ShmSystem

/// A single-producer single-consumer ring of variable-length byte messages
/// in shared memory.
///
/// ```text
/// offset  line  contents (written by)
///    0    0     header (creator, once): magic "SPSC", version,
///                 capacity, maxMessage, regionSize, checksum
///  128    1     tail: UInt64, bytes ever published (producer; for restarts
///                 and diagnostics, never read on the consumer's fast path)
///  136          producer role slot: packed ProcessIdentity
///  256    2     head: UInt64, bytes ever consumed (consumer)
///  264          consumer role slot
///  272          lostRecords: UInt64, corrupt records skipped (consumer)
///  384    3     producerMayPark: UInt32, consumerMayPark: UInt32 (read-mostly)
///  512    4     data parker: seq, sleepers — the consumer sleeps here
///  640    5     space parker: seq, sleepers — the producer sleeps here
///  768          data[capacity]  (capacity a power of two)
///
/// record (16-byte aligned, never split across the end of data):
///   +0  tag     UInt64   tag(position): published when it matches
///   +8  meta    UInt64   length (low 32 bits) | type << 32
///                        type 1 message, 2 padding to the end of data
///   +16 payload[length], zero to 15 bytes of alignment
///
/// tag(p) = splitmix64(p ^ salt) | 1, with `salt` random per ring (in the
/// header), p the record's position counted in bytes since creation.
/// ```
///
/// **Publication.** A record becomes visible with one release store of its
/// tag, after its meta word and payload. The consumer polls the tag word at
/// its own position and compares it with tag(position), so a small message
/// costs it one cache-line transfer from the producer — the same as the raw
/// cache-line ping-pong floor — and nothing ever needs zeroing: positions
/// never repeat, so a tag left from an earlier lap never matches, and stale
/// payload bytes match only with probability 2⁻⁶⁴. A message that would not
/// fit before the end of the data area is written at offset 0 and published
/// first; then a padding record at the old position sends the consumer there.
///
/// **Freeing.** The consumer frees space with one store of `head`; the
/// producer keeps a private copy of `head` and re-reads the shared one only
/// when its copy says the ring is full.
///
/// **Sleeping.** A side whose wait strategy may park says so in its
/// `…MayPark` flag; the other side then publishes with a sequentially
/// consistent store and checks for sleepers (see `Parker`). Against a
/// busy-spinning peer both sides use plain release stores and make no
/// sleeper check at all.
///
/// **Distrust.** Nothing read from shared memory is trusted: every header's
/// type and length is checked against the space before the end of the data
/// area and the configured maximum, and positions read from the other side
/// are checked against each other and the capacity. A bad record costs the
/// consumer that record (`QueueError.corruptRecord`, after which it skips to
/// the producer's published position); bad positions are reported as
/// `corruptIndices` on every call.
public final class MessageRing: @unchecked Sendable {
    static let magic = SegmentKind("SPSC")
    static let version: UInt32 = 2
    static let headerFields = 4 // capacity, maxMessage, regionSize, salt
    static let tailOffset = 128, producerSlotOffset = 136
    static let headOffset = 256, consumerSlotOffset = 264, lostOffset = 272
    static let flagsOffset = 384
    /// The two flags in line 3 (the table above).
    static let producerMayParkOffset = flagsOffset, consumerMayParkOffset = flagsOffset + 4
    static let dataParkerOffset = 512, spaceParkerOffset = 640
    static let dataOffset = 768
    @usableFromInline static let recordHeader = 16
    /// Byte offsets inside a record (the table above).
    @usableFromInline enum RecordOffset {
        @usableFromInline static let tag = 0, meta = 8, payload = 16
    }
    @usableFromInline static let typeMessage: UInt64 = 1
    @usableFromInline static let typePadding: UInt64 = 2

    /// Everything the hot paths touch, as plain values and raw pointers, so
    /// sending and receiving do no reference counting.
    @usableFromInline let view: RingView

    /// The memory the ring lives in (keeps the mapping alive).
    public let region: MappedBytes
    /// Whatever owns the memory (a segment), kept alive as long as this is.
    package let anchor: AnyObject?
    /// Data bytes (a power of two).
    public let capacity: Int
    /// Largest payload accepted (at most `capacity / 2 - 16`, so any message
    /// fits whatever the current position).
    public let maxMessageSize: Int

    let mask: UInt64
    /// Mixed into every record tag (see the layout).
    let salt: UInt64
    let base: UnsafeMutableRawPointer
    let data: UnsafeMutableRawPointer
    let tail: UnsafeMutablePointer<Atomic<UInt64>>
    let head: UnsafeMutablePointer<Atomic<UInt64>>
    let lost: UnsafeMutablePointer<Atomic<UInt64>>
    let producerSlot: RoleSlot
    let consumerSlot: RoleSlot
    let dataParker: Parker
    let spaceParker: Parker
    /// 1 when the producer may park waiting for space (the consumer must then
    /// free space with a seq_cst store and check for sleepers).
    let producerMayPark: UnsafeMutablePointer<Atomic<UInt32>>
    /// 1 when the consumer may park waiting for data.
    let consumerMayPark: UnsafeMutablePointer<Atomic<UInt32>>

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
    ///   - maxMessageSize: defaults to (and may not exceed) `capacity/2 - 16`.
    public static func initialize(_ region: MappedBytes, capacity: Int, maxMessageSize: Int? = nil, anchor: AnyObject? = nil) throws(QueueError) -> MessageRing {
        guard capacity >= 64, capacity <= 1 << 40, capacity & (capacity - 1) == 0 else {
            throw .invalidConfiguration("capacity \(capacity) must be a power of two from 64 to 2^40")
        }
        let limit = maximumMessageSize(capacity: capacity)
        let maximum = maxMessageSize ?? limit
        guard maximum > 0, maximum <= limit else {
            throw .invalidConfiguration("maxMessageSize \(maximum) must be 1…\(limit) for a capacity of \(capacity)")
        }
        let needed = requiredSize(capacity: capacity)
        guard region.count >= needed else { throw .regionTooSmall(needed: needed, available: region.count) }
        region.view(0..<dataOffset).fill(with: 0)
        LayoutHeader.write(region.unsafeBaseAddress, magic: magic, version: version,
                           fields: [UInt64(capacity), UInt64(maximum), UInt64(needed), UInt64.random(in: 1...UInt64.max)])
        // Until a side attaches and says otherwise, assume it may park.
        region.storeBytes(of: UInt32(1), toByteOffset: producerMayParkOffset, as: UInt32.self)
        region.storeBytes(of: UInt32(1), toByteOffset: consumerMayParkOffset, as: UInt32.self)
        return try MessageRing(attaching: region, anchor: anchor)
    }

    /// Attaches to a ring another process laid out, validating its header.
    public init(attaching region: MappedBytes, anchor: AnyObject? = nil) throws(QueueError) {
        let fields = try LayoutHeader.read(region, magic: MessageRing.magic, version: MessageRing.version,
                                           count: MessageRing.headerFields, what: "SPSC ring")
        let capacity = fields[0], maximum = fields[1], size = fields[2]
        self.salt = fields[3]
        guard capacity >= 64, capacity <= 1 << 40, capacity & (capacity - 1) == 0,
              size == UInt64(MessageRing.requiredSize(capacity: Int(capacity))),
              maximum > 0, maximum <= UInt64(MessageRing.maximumMessageSize(capacity: Int(capacity))) else {
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
        data = base + MessageRing.dataOffset
        tail = UnsafeMutablePointer(OpaquePointer(base + MessageRing.tailOffset))
        head = UnsafeMutablePointer(OpaquePointer(base + MessageRing.headOffset))
        lost = UnsafeMutablePointer(OpaquePointer(base + MessageRing.lostOffset))
        producerSlot = RoleSlot(base + MessageRing.producerSlotOffset)
        consumerSlot = RoleSlot(base + MessageRing.consumerSlotOffset)
        dataParker = Parker(base + MessageRing.dataParkerOffset)
        spaceParker = Parker(base + MessageRing.spaceParkerOffset)
        producerMayPark = UnsafeMutablePointer(OpaquePointer(base + MessageRing.producerMayParkOffset))
        consumerMayPark = UnsafeMutablePointer(OpaquePointer(base + MessageRing.consumerMayParkOffset))
        view = RingView(data: data, mask: mask, capacity: Int(capacity), maxMessageSize: Int(maximum), salt: salt,
                        tail: tail, head: head, lost: lost, producerMayPark: producerMayPark,
                        consumerMayPark: consumerMayPark, dataParker: dataParker, spaceParker: spaceParker)
    }

    /// The largest payload a ring of `capacity` accepts: a record of it plus
    /// padding always fits in an empty ring.
    public static func maximumMessageSize(capacity: Int) -> Int { capacity / 2 - recordHeader }

    @inline(__always) func tagWord(at offset: Int) -> UnsafeMutablePointer<Atomic<UInt64>> { view.tagWord(at: offset) }
    @inline(__always) func tag(_ position: UInt64) -> UInt64 { view.tag(position) }

    /// Record size for a payload of `length` bytes.
    @inlinable @inline(__always)
    static func recordSize(_ length: Int) -> Int { (recordHeader + length + 15) & ~15 }

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
    func positionsAreSane(head h: UInt64, tail t: UInt64) -> Bool { view.positionsAreSane(head: h, tail: t) }
}

/// The ring's layout resolved to raw pointers and constants: what the
/// producer and consumer hot paths use, free of reference counting. Valid
/// while the `MessageRing` (and so its mapping) is alive, which every holder
/// guarantees by also holding the ring.
@usableFromInline
struct RingView {
    @usableFromInline let data: UnsafeMutableRawPointer
    @usableFromInline let mask: UInt64
    @usableFromInline let capacity: Int
    @usableFromInline let maxMessageSize: Int
    @usableFromInline let salt: UInt64
    @usableFromInline let tail: UnsafeMutablePointer<Atomic<UInt64>>
    @usableFromInline let head: UnsafeMutablePointer<Atomic<UInt64>>
    @usableFromInline let lost: UnsafeMutablePointer<Atomic<UInt64>>
    @usableFromInline let producerMayPark: UnsafeMutablePointer<Atomic<UInt32>>
    @usableFromInline let consumerMayPark: UnsafeMutablePointer<Atomic<UInt32>>
    @usableFromInline let dataParker: Parker
    @usableFromInline let spaceParker: Parker

    /// The tag word of the record at data offset `offset`.
    @inlinable @inline(__always)
    func tagWord(at offset: Int) -> UnsafeMutablePointer<Atomic<UInt64>> {
        UnsafeMutablePointer(OpaquePointer(data + offset))
    }

    /// The tag a record at `position` carries once published.
    @inlinable @inline(__always)
    func tag(_ position: UInt64) -> UInt64 { positionTag(position, salt: salt) }

    @inlinable @inline(__always)
    func positionsAreSane(head h: UInt64, tail t: UInt64) -> Bool {
        t >= h && t &- h <= UInt64(capacity)
    }
}

/// The tag published with the entry at `position` of a ring or queue:
/// splitmix64(position ^ salt) | 1 — never 0 (an unwritten entry), and
/// different for every lap, so entries need no clearing.
@inlinable @inline(__always)
func positionTag(_ position: UInt64, salt: UInt64) -> UInt64 {
    var z = position ^ salt
    z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
    z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
    return (z ^ (z >> 31)) | 1
}
