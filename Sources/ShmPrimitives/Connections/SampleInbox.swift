import Synchronization
import ShmSystem

/// A receiver's inbox: segment `svc.<service>.s<portID>`, one connection
/// block per sender slot of the service. The zero-copy connection between a
/// publisher and a subscriber is one block: a delivery queue of chunk
/// references (sender → receiver), a return queue (receiver → sender) and
/// the sender's counters. Below the public API, as iceoryx2 keeps its
/// `zero_copy_connection` below its ports: the ports compose these
/// operations and touch no atomic themselves.
///
/// ```text
/// offset  contents
///    0    header: magic "SUBQ", version, maxPublishers, deliveryCapacity,
///           returnCapacity, blockStride, portID, checksum
///  128    parker: seq, sleepers — the subscriber sleeps here when it waits
///  256    mayPark UInt32 — 1 if the subscriber's wait strategy may sleep
///  320    epoch UInt32 — bumped by a publisher after it claimed a block, so
///           the subscriber notices new publishers with one load
/// 4096    block[0] … block[maxPublishers-1], blockStride bytes each:
///           +0   owner     UInt64  portID of the publisher using the block, 0 free
///           +8   attached  UInt64  portID of the publisher whose pool the
///                                   subscriber has mapped (0: none yet)
///           +16  space parker: seq, sleepers — a publisher of a `.block`
///                  service sleeps here while the delivery queue is full
///           +32  attachedSegments UInt32  how many of that pool's segments
///                                   the subscriber has mapped (all that existed
///                                   when it read the pool's segment count)
///           +64  lost      UInt64  samples dropped by the overflow policy  } written by the
///           +72  delivered UInt64                                          } publisher only
///           +128 delivery IndexQueue (publisher → subscriber: chunk references)
///           +…   return   IndexQueue (subscriber → publisher: released chunks)
/// ```
/// A publisher claims block i (its slot index in the service) with a CAS of
/// `owner` from 0 (`claim`). When that publisher is gone, the subscriber
/// drains the block, lays its queues out afresh and frees it (`free`,
/// owner → 0) for the next publisher in that slot. A publisher that is
/// dropped with samples still queued waits (bounded) for `attached` to name
/// it before it removes its pool's name, so a subscriber that was asleep
/// still gets those samples (the Dekker pair in `DepartedPools.swift`).
///
/// **Back-pressure.** Under the `.block` overflow policy a publisher that
/// finds the delivery queue full waits with its `Waiter` on the block's
/// space parker; the subscriber, after each pop from such a queue, makes the
/// Dekker check (`SpaceWakeup`) and wakes it. Other policies never wait
/// and their subscribers make no check.
@_spi(ShmInternals) public struct SampleInbox: @unchecked Sendable {
    package static let kind = SegmentKind("SUBQ")
    static let magic = SegmentKind("SUBQ")
    static let version: UInt32 = 5 // 5: attachedSegments (pools that grow)

    /// Byte offsets of the header's words (the table above).
    package enum Offset {
        package static let parker = 128, mayPark = 256, epoch = 320, blocks = 4096
    }

    /// Byte offsets inside a block (the table above).
    package enum BlockOffset {
        package static let owner = 0, attached = 8, spaceParker = 16, attachedSegments = 32, lost = 64, delivered = 72, queues = 128
    }

    let data: MappedBytes
    package let maxPublishers: Int
    let deliveryCapacity: Int
    let returnCapacity: Int
    let blockStride: Int
    let portID: UInt64

    static func stride(deliveryCapacity: Int, returnCapacity: Int) -> Int {
        let raw = BlockOffset.queues + IndexQueue.requiredSize(capacity: deliveryCapacity) + IndexQueue.requiredSize(capacity: returnCapacity)
        return (raw + 127) & ~127
    }

    package static func size(maxPublishers: Int, deliveryCapacity: Int, returnCapacity: Int) -> Int {
        Offset.blocks + maxPublishers * stride(deliveryCapacity: deliveryCapacity, returnCapacity: returnCapacity)
    }

    package static func initialize(_ data: MappedBytes, maxPublishers: Int, deliveryCapacity: Int, returnCapacity: Int, portID: UInt64) throws(QueueError) {
        data.view(0..<Offset.blocks).fill(with: 0)
        let stride = stride(deliveryCapacity: deliveryCapacity, returnCapacity: returnCapacity)
        LayoutHeader.write(data.unsafeBaseAddress, magic: magic, version: version,
                           fields: [UInt64(maxPublishers), UInt64(deliveryCapacity), UInt64(returnCapacity), UInt64(stride), portID])
        let inbox = try SampleInbox(data, expectedPortID: portID)
        for i in 0..<maxPublishers { try inbox.resetBlock(i) }
    }

    /// Validates the header another process wrote.
    /// - Throws: `.invalidLayout` naming what does not fit.
    package init(_ data: MappedBytes, expectedPortID: UInt64) throws(QueueError) {
        let f = try LayoutHeader.read(data, magic: SampleInbox.magic, version: SampleInbox.version, count: 5, what: "subscriber inbox")
        guard f[4] == expectedPortID else { throw .invalidLayout("subscriber inbox belongs to another port") }
        guard f[0] >= 1, f[0] <= 4096, f[1] >= 2, f[1] <= 1 << 24, f[2] >= 2, f[2] <= 1 << 24,
              f[3] == UInt64(SampleInbox.stride(deliveryCapacity: Int(f[1]), returnCapacity: Int(f[2]))),
              UInt64(Offset.blocks) + f[0] * f[3] <= UInt64(data.count) else {
            throw .invalidLayout("subscriber inbox header does not fit its segment")
        }
        self.data = data
        maxPublishers = Int(f[0])
        deliveryCapacity = Int(f[1])
        returnCapacity = Int(f[2])
        blockStride = Int(f[3])
        portID = f[4]
    }

    // MARK: The header

    /// Where the subscriber sleeps; publishers wake it after a delivery.
    package var parker: Parker { Parker(data.unsafeBaseAddress + Offset.parker) }

    /// The epoch word: publishers bump it after claiming a block.
    package var epoch: Epoch { Epoch(word: word32(Offset.epoch)) }

    /// The subscriber says whether its wait strategy may sleep. Set once,
    /// before it registers.
    package func setMayPark(_ mayPark: Bool) {
        // SYNC POINT: seq_cst store pairs with the publisher's load in
        // `subscriberMayPark` (it then decides whether to publish with seq_cst
        // and check for sleepers).
        word32(Offset.mayPark).pointee.store(mayPark ? 1 : 0, ordering: .sequentiallyConsistent)
    }

    /// Whether the subscriber may sleep (read by a publisher as it connects).
    package var subscriberMayPark: Bool {
        // SYNC POINT: pairs with the seq_cst store in `setMayPark`, made before
        // the subscriber registered (the port table's release/acquire orders it).
        word32(Offset.mayPark).pointee.load(ordering: .relaxed) != 0
    }

    /// The epoch word: one load tells a subscriber that some publisher
    /// claimed a block since it last looked.
    public struct Epoch: @unchecked Sendable {
        @usableFromInline let word: UnsafeMutablePointer<Atomic<UInt32>>

        /// The current epoch, for the receive path.
        @inlinable @inline(__always)
        public func current() -> UInt32 {
            // SYNC POINT: acquire pairs with the release increment in `advance`
            // (the publisher's claim of its block happens before).
            word.pointee.load(ordering: .acquiring)
        }

        /// The current epoch, re-read after announcing a sleeper.
        @inlinable
        public func currentBeforeSleeping() -> UInt32 {
            // SYNC POINT (Dekker): seq_cst load pairs with the sleeper
            // announcement's seq_cst increment (`Parker`) and the publisher's
            // increment here: a claim made while we go to sleep is seen or wakes us.
            word.pointee.load(ordering: .sequentiallyConsistent)
        }

        /// A publisher announces the block it just claimed.
        package func advance() {
            // SYNC POINT: release pairs with the subscriber's acquire load in `current()`.
            word.pointee.wrappingAdd(1, ordering: .releasing)
        }
    }

    // MARK: Blocks

    func block(_ index: Int) -> MappedBytes {
        data.view(Offset.blocks + index * blockStride ..< Offset.blocks + (index + 1) * blockStride)
    }

    private func word64(_ index: Int, _ offset: Int) -> UnsafeMutablePointer<Atomic<UInt64>> {
        UnsafeMutablePointer(OpaquePointer(block(index).unsafeBaseAddress + offset))
    }

    private func word32(_ offset: Int) -> UnsafeMutablePointer<Atomic<UInt32>> {
        UnsafeMutablePointer(OpaquePointer(data.unsafeBaseAddress + offset))
    }

    /// The publisher using block `index` (0: free).
    package func owner(of index: Int) -> UInt64 {
        // SYNC POINT: acquire pairs with the acquire-release CAS in `claim`
        // (and `free`): the publisher's claim, and the reset before a free.
        word64(index, BlockOffset.owner).pointee.load(ordering: .acquiring)
    }

    /// A publisher claims block `index` for `portID` (its slot index).
    /// Returns true if the block is ours (claimed now, or already).
    package func claim(_ index: Int, for portID: UInt64) -> Bool {
        // SYNC POINT: acquire-release CAS pairs with the subscriber's CAS freeing
        // the block in `free` (its reset of the queues happens before).
        let claimed = word64(index, BlockOffset.owner).pointee.compareExchange(expected: 0, desired: portID, ordering: .acquiringAndReleasing)
        return claimed.exchanged || claimed.original == portID
    }

    /// The publishers owning a block of this inbox now (slow path).
    package var owners: [UInt64] { (0..<maxPublishers).map { owner(of: $0) }.filter { $0 != 0 } }

    /// The subscriber frees block `index` (after `resetBlock`) if `owner`
    /// still holds it.
    package func free(_ index: Int, from owner: UInt64) {
        // SYNC POINT: acquire-release CAS pairs with the next publisher's CAS in `claim`.
        _ = word64(index, BlockOffset.owner).pointee.compareExchange(expected: owner, desired: 0, ordering: .acquiringAndReleasing)
    }

    /// The subscriber records that it mapped the first `segments` segments
    /// of `publisherID`'s pool for block `index` (every one that existed
    /// when it read the pool's segment count).
    package func markAttached(_ index: Int, to publisherID: UInt64, segments: Int) {
        // SYNC POINT (Dekker): seq_cst stores, then the subscriber's fence in
        // `removeDepartedPoolIfUnawaited`, pair with the departing publisher's
        // unregister, fence and loads in `awaits`. The segment count goes
        // first: a publisher that reads our ID reads a count at least as new.
        UnsafeMutablePointer<Atomic<UInt32>>(OpaquePointer(block(index).unsafeBaseAddress + BlockOffset.attachedSegments))
            .pointee.store(UInt32(clamping: segments), ordering: .sequentiallyConsistent)
        word64(index, BlockOffset.attached).pointee.store(publisherID, ordering: .sequentiallyConsistent)
    }

    /// True if block `index`'s subscriber may still need to map a segment
    /// of `publisherID`'s pool: it has not mapped the pool and references
    /// from it are queued, or it has mapped fewer than `segments` of the
    /// pool's segments (whatever is queued: it may have popped a reference
    /// into one it is about to map). `segments` is the pool's segment count
    /// (`Int.max` when the caller cannot read it: then an attached
    /// subscriber counts as waiting; see `DepartedPools.swift`).
    package func awaits(_ publisherID: UInt64, block index: Int, segments: Int = 1) -> Bool {
        // SYNC POINT (Dekker): seq_cst loads pair with `markAttached` (above).
        guard index < maxPublishers,
              word64(index, BlockOffset.owner).pointee.load(ordering: .sequentiallyConsistent) == publisherID else { return false }
        let attached = word64(index, BlockOffset.attached).pointee.load(ordering: .sequentiallyConsistent) == publisherID
        let mapped = UnsafeMutablePointer<Atomic<UInt32>>(OpaquePointer(block(index).unsafeBaseAddress + BlockOffset.attachedSegments))
            .pointee.load(ordering: .sequentiallyConsistent)
        if attached { return Int(mapped) < segments }
        guard let queue = try? IndexQueue(attaching: deliveryRegion(index)) else { return false }
        return queue.hasValue
    }

    /// Publishers whose pools this inbox's subscriber may still need to map
    /// (`segments` gives a publisher's segment count).
    package func awaitedPublishers(segments: (UInt64) -> Int = { _ in 1 }) -> [UInt64] {
        (0..<maxPublishers).compactMap { block in
            // SYNC POINT (Dekker): as in `awaits`.
            let owner = word64(block, BlockOffset.owner).pointee.load(ordering: .sequentiallyConsistent)
            return owner != 0 && awaits(owner, block: block, segments: segments(owner)) ? owner : nil
        }
    }

    /// The departed publisher's side of the pool hand-off (Dekker, see
    /// `DepartedPools.swift`): between leaving the port table and reading
    /// `attached` through `awaits`.
    package static func fenceAfterLeaving() {
        // SYNC POINT (Dekker): pairs with the fence in `fenceAfterAttaching`:
        // either the publisher sees the subscriber's `attached`, or the
        // subscriber sees the publisher gone from the port table.
        atomicMemoryFence(ordering: .sequentiallyConsistent)
    }

    /// The subscriber's side: between `markAttached` (or `free`) and reading
    /// the port table.
    package static func fenceAfterAttaching() {
        // SYNC POINT (Dekker): pairs with the fence in `fenceAfterLeaving`.
        atomicMemoryFence(ordering: .sequentiallyConsistent)
    }

    /// Where a publisher of a `.block` service sleeps while block `index`'s
    /// delivery queue is full.
    package func spaceParker(of index: Int) -> Parker {
        Parker(block(index).unsafeBaseAddress + BlockOffset.spaceParker)
    }

    /// The subscriber's side of back-pressure for block `index`.
    package func spaceWakeup(of index: Int) -> SpaceWakeup { SpaceWakeup(parker: spaceParker(of: index)) }

    /// Wakes a publisher parked on a full delivery queue after the
    /// subscriber made room (`.block` services only).
    public struct SpaceWakeup: @unchecked Sendable {
        @usableFromInline let parker: Parker

        init(parker: Parker) { self.parker = parker }

        /// Call after a pop from the block's delivery queue: one fence and
        /// one load of a line the publisher writes only when it sleeps; a
        /// syscall only if it does.
        @inlinable @inline(__always)
        public func afterMakingRoom() {
            // SYNC POINT (Dekker): the fence orders our release store of the
            // queue's head before the seq_cst load of `sleepers` in
            // `wakeIfSleeping`; it pairs with the publisher's seq_cst sleeper
            // announcement and seq_cst re-read of head (`IndexQueue.Writer.hasRoom`).
            atomicMemoryFence(ordering: .sequentiallyConsistent)
            parker.wakeIfSleeping()
        }
    }

    /// Samples the overflow policy dropped in block `index` (monitoring: relaxed).
    package func lost(in index: Int) -> UInt64 { word64(index, BlockOffset.lost).pointee.load(ordering: .relaxed) }

    /// Samples the subscriber handed back through block `index`'s return
    /// queue (monitoring: relaxed; 0 if the queue is unreadable).
    package func returned(in index: Int) -> UInt64 {
        (try? IndexQueue(attaching: returnRegion(index)))?.pushedCount ?? 0
    }

    /// Samples delivered into block `index` (monitoring: relaxed).
    package func delivered(in index: Int) -> UInt64 { word64(index, BlockOffset.delivered).pointee.load(ordering: .relaxed) }

    /// The publisher's counters in block `index` (only it writes them).
    package func counters(of index: Int) -> SenderCounters {
        SenderCounters(lost: word64(index, BlockOffset.lost), delivered: word64(index, BlockOffset.delivered))
    }

    /// A publisher's running totals of one connection, on a line only it
    /// writes: plain relaxed stores, no read-modify-write (readers only
    /// monitor them).
    public struct SenderCounters: @unchecked Sendable {
        @usableFromInline let lostWord: UnsafeMutablePointer<Atomic<UInt64>>
        @usableFromInline let deliveredWord: UnsafeMutablePointer<Atomic<UInt64>>

        init(lost: UnsafeMutablePointer<Atomic<UInt64>>, delivered: UnsafeMutablePointer<Atomic<UInt64>>) {
            lostWord = lost
            deliveredWord = delivered
        }

        @inlinable @inline(__always)
        public func store(lost total: UInt64) { lostWord.pointee.store(total, ordering: .relaxed) }

        @inlinable @inline(__always)
        public func store(delivered total: UInt64) { deliveredWord.pointee.store(total, ordering: .relaxed) }
    }

    package func deliveryRegion(_ index: Int) -> MappedBytes {
        let start = BlockOffset.queues
        return block(index).view(start..<start + IndexQueue.requiredSize(capacity: deliveryCapacity))
    }

    package func returnRegion(_ index: Int) -> MappedBytes {
        let start = BlockOffset.queues + IndexQueue.requiredSize(capacity: deliveryCapacity)
        return block(index).view(start..<start + IndexQueue.requiredSize(capacity: returnCapacity))
    }

    /// Lays out block `index`'s queues afresh (fresh salts, so nothing left
    /// from the previous publisher can be mistaken for a new entry) and
    /// zeroes its counters. Before `free` (whose release publishes it).
    package func resetBlock(_ index: Int) throws(QueueError) {
        _ = try IndexQueue.initialize(deliveryRegion(index), capacity: deliveryCapacity)
        _ = try IndexQueue.initialize(returnRegion(index), capacity: returnCapacity)
        word64(index, BlockOffset.lost).pointee.store(0, ordering: .relaxed)
        word64(index, BlockOffset.delivered).pointee.store(0, ordering: .relaxed)
        word64(index, BlockOffset.attached).pointee.store(0, ordering: .relaxed)
        UnsafeMutablePointer<Atomic<UInt32>>(OpaquePointer(block(index).unsafeBaseAddress + BlockOffset.attachedSegments))
            .pointee.store(0, ordering: .relaxed)
        // A publisher killed while parked leaves a sleeper count behind.
        spaceParker(of: index).resetSleepers()
    }
}
