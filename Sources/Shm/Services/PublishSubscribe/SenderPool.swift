import ShmSystem
@_spi(ShmInternals) import ShmPrimitives

/// A sender's pool as its sender keeps it: the segments in /dev/shm (one,
/// or several when it grows — `PoolAllocation`), and this process's
/// bookkeeping per chunk, indexed by *slot*: a number private to the sender
/// that does not depend on the segment, so the send path indexes flat
/// arrays. Receivers never see slots; references carry chunk IDs (segment
/// number and index in it, `ChunkReference`).
///
/// Growth (slow path, from a loan): a loan that finds every chunk in use
/// adds a segment with as many chunks as the current ones (doubling); a loan
/// that asks for more bytes than the chunks hold adds a segment of larger
/// chunks and *retires* the others: their free chunks are never loaned
/// again — each gives its slot up as soon as it is free — and a retired
/// segment is unlinked (its memory goes once receivers that mapped it let
/// go) when its last chunk comes back. Segment 0 holds the pool's segment
/// count and keeps its name for the sender's life. Slots in use (chunks
/// that may be loaned, and retired chunks still held) never exceed
/// `slotLimit` (the service's `chunksPerPublisher`), so the pool can always
/// hold what the limits allow in flight, and receivers' return queues (sized
/// for that many) never overflow.
final class SenderPool {
    /// One segment of the pool, mapped read-write.
    final class Segment {
        let number: Int
        let mapping: SharedMemorySegment
        let pool: ChunkPool
        /// The slot of each chunk of this segment (-1: a retired chunk that
        /// was freed and gave its slot up).
        let slots: UnsafeMutablePointer<Int32>
        /// Retired: no free chunk of it is loaned again.
        var retired = false
        /// Retired: chunks not free yet (loaned, queued, borrowed, in history).
        var busy = 0

        init(number: Int, mapping: SharedMemorySegment, pool: ChunkPool) {
            self.number = number
            self.mapping = mapping
            self.pool = pool
            slots = .allocate(capacity: pool.chunkCount)
        }

        deinit { slots.deallocate() }
    }

    /// Per segment number: the slots of its chunks and their count (0: no
    /// such segment, or disposed), to resolve a returned chunk ID.
    struct SlotTable {
        var slots: UnsafeMutablePointer<Int32>?
        var count: Int
    }

    /// `holders` carries this bit for every chunk of a retired segment.
    static let retiredBit: UInt32 = 1 << 31

    let name: ServiceName
    let portID: UInt64
    let serviceHash: UInt64
    let alignment: Int
    /// Where the payload starts in every chunk of every segment.
    let payloadOffset: Int
    /// The most bytes a chunk may need to hold (the service's maximum).
    let maxCapacity: Int
    /// Chunks the live segments may have together.
    let slotLimit: Int
    /// Chunks of a new growing pool's first segment; nil: reserved, never grows.
    let initialChunks: Int?

    /// Per slot: the chunk's header address, its ID, and its holders
    /// (receivers holding it, +1 in history, +1 while being delivered; with
    /// `retiredBit` if its segment is retired).
    let address: UnsafeMutablePointer<UnsafeMutableRawPointer>
    let ids: UnsafeMutablePointer<UInt32>
    let holders: UnsafeMutablePointer<UInt32>
    /// Per slot: the number of the segment it belongs to.
    let segmentOfSlot: UnsafeMutablePointer<UInt8>
    /// By segment number (256 entries: an ID's segment byte indexes it).
    let table: UnsafeMutablePointer<SlotTable>
    /// Slots no live segment uses.
    var unusedSlots: [Int32]
    /// Live segments (segment 0 first).
    var segments: [Segment] = []
    /// Bytes the chunks of the segments not retired hold.
    var capacity: Int
    /// Chunks of the segments not retired.
    var classChunks = 0
    /// Slots in use: chunks that may be loaned, and retired chunks not yet free.
    var liveChunks = 0
    var nextNumber = 1
    /// Segments created, and retired segments unlinked, over the pool's life (monitoring).
    var grown = 0
    var disposed = 0

    /// The pool over `first`, its segment 0 (made by `createFirstSegment`).
    init(first: SharedMemorySegment, name: ServiceName, portID: UInt64, alignment: Int, maxCapacity: Int,
         slotLimit: Int, initialChunks: Int?) throws(ServiceError) {
        self.name = name
        self.portID = portID
        serviceHash = ServiceLayout.hash(name.value)
        self.alignment = alignment
        self.maxCapacity = maxCapacity
        self.slotLimit = slotLimit
        self.initialChunks = initialChunks
        let pool = try ChunkPool(first.data, expectedPortID: portID, serviceHash: serviceHash, service: name.value)
        guard pool.chunkCount <= slotLimit else {
            throw .corrupt(service: name.value, reason: "pool segment 0 has \(pool.chunkCount) chunks, more than \(slotLimit)")
        }
        payloadOffset = pool.payloadOffset
        capacity = pool.payloadCapacity
        address = .allocate(capacity: slotLimit)
        ids = .allocate(capacity: slotLimit)
        ids.initialize(repeating: ChunkPool.noHint, count: slotLimit)
        holders = .allocate(capacity: slotLimit)
        holders.initialize(repeating: 0, count: slotLimit)
        segmentOfSlot = .allocate(capacity: slotLimit)
        segmentOfSlot.initialize(repeating: 0, count: slotLimit)
        table = .allocate(capacity: 256)
        table.initialize(repeating: SlotTable(slots: nil, count: 0), count: 256)
        unusedSlots = (0..<Int32(slotLimit)).reversed()
        _ = adopt(Segment(number: 0, mapping: first, pool: pool))
    }

    deinit {
        address.deallocate()
        ids.deallocate()
        holders.deallocate()
        segmentOfSlot.deallocate()
        table.deallocate()
    }

    /// Segment 0's view (the segment count lives there).
    var first: ChunkPool { segments[0].pool }
    var firstMapping: SharedMemorySegment { segments[0].mapping }

    /// Chunks of the live segments (monitoring).
    var chunks: Int { segments.reduce(0) { $0 + $1.pool.chunkCount } }

    /// Bytes of /dev/shm the live segments take.
    var footprint: Int { segments.reduce(0) { $0 + $1.mapping.data.count } }

    // MARK: Creating segments

    /// Room for whole elements: `bytes` rounded up to the alignment.
    static func aligned(_ bytes: Int, _ alignment: Int) -> Int { (bytes + alignment - 1) / alignment * alignment }

    /// The chunk size a growing pool uses for loans of `bytes`: the next
    /// power of two (at least 64), aligned, at most `maximum`.
    static func chunkCapacity(for bytes: Int, alignment: Int, maximum: Int) -> Int {
        var size = 64
        while size < bytes { size <<= 1 }
        return min(maximum, aligned(size, alignment))
    }

    func capacity(for bytes: Int) -> Int { SenderPool.chunkCapacity(for: bytes, alignment: alignment, maximum: maxCapacity) }

    /// Creates segment `number` of port `portID`'s pool (`svc.<service>.p<id>`
    /// for 0, `…-<number>` after): reserved with `posix_fallocate`, so a full
    /// /dev/shm is `.segment(.insufficientSpace)` now, never SIGBUS later.
    static func createSegment(name: ServiceName, portID: UInt64, number: Int, chunks: Int, capacity: Int,
                              alignment: Int) throws(ServiceError) -> SharedMemorySegment {
        let hash = ServiceLayout.hash(name.value)
        return try serviceCall {
            try SharedMemorySegment.create(name.poolSegmentName(portID, segment: number),
                                           size: ChunkPool.size(chunkCount: chunks, payloadCapacity: capacity, alignment: alignment),
                                           mode: 0o600, kind: ChunkPool.kind, lifetime: .persistent) { data in
                ChunkPool.initialize(data, chunkCount: chunks, payloadCapacity: capacity, alignment: alignment,
                                     portID: portID, serviceHash: hash, segmentNumber: number)
            }
        }
    }

    /// Gives `segment`'s chunks slots and makes them loanable; returns
    /// those slots (for the sender's free stack, chunk 0 last: on top).
    func adopt(_ segment: Segment) -> [Int32] {
        let count = segment.pool.chunkCount
        var added: [Int32] = []
        added.reserveCapacity(count)
        for index in 0..<count {
            let slot = unusedSlots.removeLast()
            segment.slots[index] = slot
            address[Int(slot)] = segment.pool.chunk(index)
            ids[Int(slot)] = ChunkReference.id(segment: segment.number, index: index)
            holders[Int(slot)] = 0
            segmentOfSlot[Int(slot)] = UInt8(segment.number)
            added.append(slot)
        }
        table[segment.number] = SlotTable(slots: segment.slots, count: count)
        segments.append(segment)
        liveChunks += count
        classChunks += count
        return added.reversed()
    }

    /// A new segment for a loan of `bytes` that found no free chunk, or
    /// chunks too small: created and mapped, not adopted yet. Nil if the pool
    /// may not grow (reserved, at its chunk limit, or out of segment numbers).
    /// `freeing`: slots the caller will free before adopting it (the free
    /// chunks that a move to larger chunks retires).
    /// - Throws: `.segment(.insufficientSpace…)` when /dev/shm is full.
    func grow(toFit bytes: Int, freeing: Int = 0) throws(ServiceError) -> Segment? {
        guard let initialChunks, nextNumber < ChunkPool.maxSegments else { return nil }
        let newCapacity = bytes > capacity ? self.capacity(for: bytes) : capacity
        // As many chunks as the current kind has (doubling), or as many as the
        // retired kind needed: in flight before is in flight after.
        let wanted = max(initialChunks, classChunks)
        let count = min(wanted, slotLimit - liveChunks + freeing, ChunkPool.maxChunksPerSegment)
        guard count >= 1 else { return nil }
        let number = nextNumber
        let mapping = try SenderPool.createSegment(name: name, portID: portID, number: number, chunks: count,
                                                   capacity: newCapacity, alignment: alignment)
        let pool: ChunkPool
        do {
            pool = try ChunkPool(mapping.data, expectedPortID: portID, serviceHash: serviceHash, segmentNumber: number)
        } catch {
            mapping.unlinkIfStillLinked()
            throw .corrupt(service: name.value, reason: error.layoutReason)
        }
        nextNumber += 1
        grown += 1
        return Segment(number: number, mapping: mapping, pool: pool)
    }

    /// Announces segments up to `nextNumber - 1` to receivers (before any
    /// reference into the newest is sent).
    func publishSegmentCount() { first.publishSegmentCount(nextNumber) }

    // MARK: Retiring

    /// Retires every segment not retired yet: chunks larger than theirs are
    /// needed. `free` is the sender's free stack (which the caller empties):
    /// chunks in it give their slots up now; the others when they come back
    /// (`retiredChunkFreed`).
    func retireAll(free: UnsafeBufferPointer<Int32>, newCapacity: Int) {
        for segment in segments where !segment.retired {
            segment.retired = true
            segment.busy = segment.pool.chunkCount
            for index in 0..<segment.pool.chunkCount { holders[Int(segment.slots[index])] |= SenderPool.retiredBit }
        }
        for slot in free { retiredChunkFreed(Int(slot)) }
        classChunks = 0
        capacity = newCapacity
    }

    /// A chunk of a retired segment is free: it gives its slot up (no
    /// reference to it can come back: nobody holds it), and the segment
    /// goes with its last chunk.
    func retiredChunkFreed(_ slot: Int) {
        guard let segment = segment(of: slot) else { return }
        let index = ChunkReference.index(ofID: ids[slot])
        guard index < segment.pool.chunkCount, segment.slots[index] == Int32(slot) else { return }
        segment.slots[index] = -1
        holders[slot] = 0
        ids[slot] = ChunkPool.noHint
        unusedSlots.append(Int32(slot))
        liveChunks -= 1
        segment.busy -= 1
        if segment.busy <= 0 { dispose(segment) }
    }

    /// Unlinks a retired segment whose chunks are all free (their slots
    /// given up already). Segment 0 keeps its name and mapping: it holds
    /// the segment count.
    func dispose(_ segment: Segment) {
        guard segment.number != 0 else { return }
        _ = segment.mapping.unlinkIfStillLinked()
        table[segment.number] = SlotTable(slots: nil, count: 0)
        segments.removeAll { $0 === segment }
        disposed += 1
    }

    func segment(of slot: Int) -> Segment? {
        let number = Int(segmentOfSlot[slot])
        return segments.first { $0.number == number && $0.retired }
    }

    /// Unlinks every segment's name (the sender leaves and no receiver awaits them).
    func unlinkAll() {
        for segment in segments { _ = segment.mapping.unlinkIfStillLinked() }
    }

    // MARK: Hot path

    /// The slot of the chunk a returned reference names, if it is one of ours.
    @inline(__always)
    func slot(ofID id: UInt32) -> Int? {
        let entry = table[ChunkReference.segment(ofID: id)]
        let index = ChunkReference.index(ofID: id)
        guard index < entry.count, let slots = entry.slots, slots[index] >= 0 else { return nil }
        return Int(slots[index])
    }
}
