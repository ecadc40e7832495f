import Synchronization
import ShmSystem

/// A bounded multi-producer multi-consumer queue of fixed-size slots in
/// shared memory, for any number of processes on either side.
///
/// ```text
/// offset  contents
///    0    header: magic "MPMC", version, capacity, slotSize, slotStride, regionSize, checksum
///  128    enqueuePos  UInt64  next position to fill (a hint any producer may advance)
///  256    dequeuePos  UInt64  next position to drain (a hint any consumer may advance)
///  384    not-empty parker (consumers sleep here)
///  512    not-full parker (producers sleep here)
///  640    lostToDeadProducers UInt64, lostToDeadConsumers UInt64, corruptSlots UInt64
///  768    slot[0] … slot[capacity-1], each slotStride bytes (a multiple of 64):
///           +0  state   UInt64  lap (32 bits) | state (2 bits) | claimant (30 bits:
///                               ProcessIdentity.compact, its lease or pid)
///           +8  length  UInt32
///           +16 payload[slotSize]
/// ```
///
/// Position `p` uses slot `p % capacity` in lap `p / capacity`. A slot moves
/// FREE(lap) → WRITING(lap, producer) → READY(lap) → READING(lap,
/// consumer) → FREE(lap + 1), each step one compare-and-swap or store on
/// its state word. Because the claimer's identity (its lease, provable from
/// any pid namespace) is part of the same word it claims with, a process
/// killed mid-write or mid-read is identifiable:
/// the blocking calls (and `recoverAbandonedSlots`) skip a slot whose
/// writer died (its message is lost and counted) and free a slot whose
/// reader died, so a SIGKILL never wedges the queue.
///
/// Every state word read from shared memory is decoded and checked against
/// the lap the reader expects; a value that fits no legal transition is
/// reported as `QueueError.corruptIndices`, never trusted.
public final class MessageQueue: @unchecked Sendable {
    static let magic = SegmentKind("MPMC")
    static let version: UInt32 = 2
    static let headerFields = 4 // capacity, slotSize, slotStride, regionSize
    static let enqueueOffset = 128, dequeueOffset = 256
    static let notEmptyOffset = 384, notFullOffset = 512
    static let lostProducersOffset = 640, lostConsumersOffset = 648, corruptOffset = 656
    static let slotsOffset = 768
    static let slotHeader = 16
    /// Byte offsets inside a slot (the table above).
    @usableFromInline enum SlotOffset {
        @usableFromInline static let state = 0, length = 8, payload = 16
    }

    static let free: UInt64 = 0, writing: UInt64 = 1, ready: UInt64 = 2, reading: UInt64 = 3
    static let lapMask: UInt64 = (1 << 32) - 1
    static let claimantMask: UInt64 = (1 << 30) - 1

    public let region: MappedBytes
    /// Whatever owns the memory (a segment), kept alive as long as this is.
    package let anchor: AnyObject?
    /// Number of slots (a power of two).
    public let capacity: Int
    /// Payload bytes per slot.
    public let slotSize: Int
    let slotStride: Int
    let mask: UInt64
    let lapShift: UInt64
    let slots: UnsafeMutableRawPointer
    let enqueuePos: UnsafeMutablePointer<Atomic<UInt64>>
    let dequeuePos: UnsafeMutablePointer<Atomic<UInt64>>
    let lostProducers: UnsafeMutablePointer<Atomic<UInt64>>
    let lostConsumers: UnsafeMutablePointer<Atomic<UInt64>>
    let corruptSlots: UnsafeMutablePointer<Atomic<UInt64>>
    package let notEmpty: Parker
    package let notFull: Parker
    let me: UInt64
    /// The handle's waiter: waits through this object use its strategy and
    /// adapt its spin budget (`HandleWaiter`).
    package let waiter: HandleWaiter

    /// How waits through this handle wait, set when attaching.
    public var waitStrategy: WaitStrategy { waiter.strategy }

    /// Bytes of region a queue needs.
    public static func requiredSize(capacity: Int, slotSize: Int) -> Int {
        slotsOffset + capacity * stride(slotSize: slotSize)
    }

    static func stride(slotSize: Int) -> Int { (slotHeader + slotSize + 63) & ~63 }

    /// Lays out an empty queue of `capacity` slots of `slotSize` bytes.
    public static func initialize(_ region: MappedBytes, capacity: Int, slotSize: Int, anchor: AnyObject? = nil,
                                  waitStrategy: WaitStrategy = .default) throws(QueueError) -> MessageQueue {
        guard capacity >= 2, capacity <= 1 << 30, capacity & (capacity - 1) == 0 else {
            throw .invalidConfiguration("capacity \(capacity) must be a power of two from 2 to 2^30")
        }
        guard slotSize >= 1, slotSize <= 1 << 30 else {
            throw .invalidConfiguration("slotSize \(slotSize) must be 1…2^30 bytes")
        }
        let needed = requiredSize(capacity: capacity, slotSize: slotSize)
        guard region.count >= needed else { throw .regionTooSmall(needed: needed, available: region.count) }
        region.view(0..<slotsOffset).fill(with: 0)
        let stride = stride(slotSize: slotSize)
        for i in 0..<capacity {
            // Lap 0, FREE, no claimant: all zero.
            region.storeBytes(of: UInt64(0), toByteOffset: slotsOffset + i * stride, as: UInt64.self)
        }
        LayoutHeader.write(region.unsafeBaseAddress, magic: magic, version: version,
                           fields: [UInt64(capacity), UInt64(slotSize), UInt64(stride), UInt64(needed)])
        return try MessageQueue(attaching: region, anchor: anchor, waitStrategy: waitStrategy)
    }

    /// Attaches to a queue laid out by another process; waits through this
    /// handle (`send`, `receive`) use `waitStrategy`.
    public init(attaching region: MappedBytes, anchor: AnyObject? = nil, waitStrategy: WaitStrategy = .default) throws(QueueError) {
        let f = try LayoutHeader.read(region, magic: MessageQueue.magic, version: MessageQueue.version,
                                      count: MessageQueue.headerFields, what: "MPMC queue")
        let capacity = f[0], slotSize = f[1], stride = f[2], size = f[3]
        guard capacity >= 2, capacity <= 1 << 30, capacity & (capacity - 1) == 0,
              slotSize >= 1, slotSize <= 1 << 30, stride == UInt64(MessageQueue.stride(slotSize: Int(slotSize))),
              size == UInt64(MessageQueue.requiredSize(capacity: Int(capacity), slotSize: Int(slotSize))) else {
            throw .invalidLayout("inconsistent queue header: capacity \(capacity), slotSize \(slotSize), stride \(stride), size \(size)")
        }
        guard Int(size) <= region.count else { throw .regionTooSmall(needed: Int(size), available: region.count) }
        precondition(Int(bitPattern: region.unsafeBaseAddress) % 128 == 0, "queue region must be 128-byte aligned")
        self.region = region
        self.anchor = anchor
        self.waiter = HandleWaiter(waitStrategy)
        self.capacity = Int(capacity)
        self.slotSize = Int(slotSize)
        self.slotStride = Int(stride)
        self.mask = capacity - 1
        self.lapShift = UInt64(capacity.trailingZeroBitCount)
        let base = region.unsafeBaseAddress
        slots = base + MessageQueue.slotsOffset
        enqueuePos = UnsafeMutablePointer(OpaquePointer(base + MessageQueue.enqueueOffset))
        dequeuePos = UnsafeMutablePointer(OpaquePointer(base + MessageQueue.dequeueOffset))
        lostProducers = UnsafeMutablePointer(OpaquePointer(base + MessageQueue.lostProducersOffset))
        lostConsumers = UnsafeMutablePointer(OpaquePointer(base + MessageQueue.lostConsumersOffset))
        corruptSlots = UnsafeMutablePointer(OpaquePointer(base + MessageQueue.corruptOffset))
        notEmpty = Parker(base + MessageQueue.notEmptyOffset)
        notFull = Parker(base + MessageQueue.notFullOffset)
        me = UInt64(ProcessIdentity.current.compact) & MessageQueue.claimantMask
    }

    // MARK: State words

    @inline(__always) static func encode(lap: UInt64, state: UInt64, claimant: UInt64) -> UInt64 {
        ((lap & lapMask) << 32) | (state << 30) | (claimant & claimantMask)
    }
    @inline(__always) static func lap(_ word: UInt64) -> UInt64 { word >> 32 }
    @inline(__always) static func state(_ word: UInt64) -> UInt64 { (word >> 30) & 3 }
    /// Whether the process that claimed the slot in `word` is proven dead.
    static func claimantIsDead(_ word: UInt64) -> Bool {
        ProcessIdentity(compact: UInt32(word & claimantMask)).liveness == .dead
    }

    @inline(__always) func lap(ofPosition p: UInt64) -> UInt64 { (p >> lapShift) & MessageQueue.lapMask }

    @inline(__always) func slot(_ p: UInt64) -> UnsafeMutableRawPointer { slots + Int(p & mask) * slotStride }

    @inline(__always) func stateWord(_ slot: UnsafeMutableRawPointer) -> UnsafeMutablePointer<Atomic<UInt64>> {
        UnsafeMutablePointer(OpaquePointer(slot))
    }

    /// How far the word's lap is ahead of `lap` (0 same, 1 next, lapMask previous).
    @inline(__always) static func lapDistance(_ word: UInt64, from lap: UInt64) -> UInt64 {
        (MessageQueue.lap(word) &- lap) & lapMask
    }

    // MARK: Enqueue

    /// Copies `bytes` into a free slot if there is one; returns false if full.
    @discardableResult
    public func trySend(_ bytes: UnsafeRawBufferPointer) throws(QueueError) -> Bool {
        guard bytes.count <= slotSize else { throw .messageTooLarge(size: bytes.count, maximum: slotSize) }
        guard let (slot, lap) = try claimForWriting() else { return false }
        slot.storeBytes(of: UInt32(bytes.count), toByteOffset: SlotOffset.length, as: UInt32.self)
        if bytes.count > 0 { (slot + MessageQueue.slotHeader).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count) }
        publish(slot, lap: lap)
        return true
    }

    /// Copies `bytes` into the queue, waiting at most `timeout` (nil: for
    /// ever) for a free slot with the handle's wait strategy.
    ///
    /// - Throws: `.messageTooLarge` past `slotSize`, `.timedOut`,
    ///   `.corruptIndices` when the shared positions make no sense.
    public func send(_ bytes: UnsafeRawBufferPointer, timeout: Duration? = nil) throws(QueueError) {
        if try trySend(bytes) { return }
        try waiter.withWaiter { (waiter: inout Waiter) throws(QueueError) in try send(bytes, timeout: timeout, waiter: &waiter) }
    }


    /// `send` with a caller's `Waiter`, whose spin budget adapts across
    /// calls (a port keeps one for its life).
    package func send(_ bytes: UnsafeRawBufferPointer, timeout: Duration?, waiter: inout Waiter) throws(QueueError) {
        if try trySend(bytes) { return }
        let end = deadline(after: timeout)
        while true {
            let ready = waiter.wait(on: notFull, deadline: end, slice: 20_000_000, ready: { self.looksNotFull() },
                                    keepWaiting: { self.recoverAbandonedSlots(); return true })
            if try trySend(bytes) { return }
            if !ready, let end, monotonicNanoseconds() >= end { throw .timedOut(after: timeout) }
        }
    }

    public func trySend(_ bytes: [UInt8]) throws(QueueError) -> Bool {
        try bytes.withUnsafeBytes { raw in Result { () throws(QueueError) in try trySend(raw) } }.get()
    }

    public func send(_ bytes: [UInt8], timeout: Duration? = nil) throws(QueueError) {
        try bytes.withUnsafeBytes { raw in Result { () throws(QueueError) in try send(raw, timeout: timeout) } }.get()
    }

    /// Sends a trivially copyable value, written in place.
    public func send<T: BitwiseCopyable>(value: T, timeout: Duration? = nil) throws(QueueError) {
        var copy = value
        try withUnsafeBytes(of: &copy) { raw in Result { () throws(QueueError) in try send(raw, timeout: timeout) } }.get()
    }

    /// Claims the slot at the enqueue position: returns it and its lap, or
    /// nil if the queue is full.
    @inline(__always)
    func claimForWriting() throws(QueueError) -> (UnsafeMutableRawPointer, UInt64)? {
        var p = enqueuePos.pointee.load(ordering: .relaxed)
        var stale = 0
        while true {
            let slot = slot(p), lap = lap(ofPosition: p)
            let word = stateWord(slot)
            // SYNC POINT: acquire pairs with the consumer's seq_cst store of
            // FREE(lap) in `release(slot:)`: its reads of the old payload are
            // done before we overwrite it.
            let w = word.pointee.load(ordering: .acquiring)
            let distance = MessageQueue.lapDistance(w, from: lap)
            let state = MessageQueue.state(w)
            if distance == 0 && state == MessageQueue.free {
                if word.pointee.compareExchange(expected: w, desired: MessageQueue.encode(lap: lap, state: MessageQueue.writing, claimant: me),
                                                ordering: .acquiring).exchanged {
                    _ = enqueuePos.pointee.compareExchange(expected: p, desired: p &+ 1, ordering: .relaxed)
                    return (slot, lap)
                }
                p = enqueuePos.pointee.load(ordering: .relaxed)
            } else if distance == 0 || (distance == 1 && state == MessageQueue.free) {
                // Taken in this lap by another producer, or already consumed: help the position on.
                _ = enqueuePos.pointee.compareExchange(expected: p, desired: p &+ 1, ordering: .relaxed)
                p = enqueuePos.pointee.load(ordering: .relaxed)
            } else if distance == MessageQueue.lapMask {
                return nil // the previous lap's message is still there: full
            } else {
                // Our position is stale (others moved on a lap or more), or the word is garbage.
                let fresh = enqueuePos.pointee.load(ordering: .relaxed)
                if fresh == p { stale += 1 } else { stale = 0 }
                if stale > 2 {
                    throw .corruptIndices("slot \(p & mask) holds lap \(MessageQueue.lap(w)) state \(state) at enqueue position \(p) (lap \(lap))")
                }
                p = fresh
            }
        }
    }

    @inline(__always)
    func publish(_ slot: UnsafeMutableRawPointer, lap: UInt64) {
        // SYNC POINT: seq_cst store releases the payload and length to the
        // consumer's acquire load in `claimForReading`, and orders the
        // sleepers check after it (Dekker with `Parker.sleep`).
        stateWord(slot).pointee.store(MessageQueue.encode(lap: lap, state: MessageQueue.ready, claimant: me), ordering: .sequentiallyConsistent)
        notEmpty.wakeIfSleeping()
    }

    // MARK: Dequeue

    /// Copies the next message into `buffer`; returns its length, or nil if
    /// the queue is empty (or its head slot is still being written).
    public func tryReceive(into buffer: UnsafeMutableRawBufferPointer) throws(QueueError) -> Int? {
        guard let (slot, lap, length) = try claimForReading(bufferSize: buffer.count) else { return nil }
        if length > 0 { buffer.baseAddress!.copyMemory(from: slot + MessageQueue.slotHeader, byteCount: length) }
        release(slot, lap: lap)
        return length
    }

    /// Copies the next message into `buffer`, waiting at most `timeout`
    /// (nil: for ever) with the handle's wait strategy.
    ///
    /// - Returns: the message's length in bytes.
    /// - Throws: `.bufferTooSmall`, `.timedOut`, `.corruptIndices`.
    public func receive(into buffer: UnsafeMutableRawBufferPointer, timeout: Duration? = nil) throws(QueueError) -> Int {
        if let n = try tryReceive(into: buffer) { return n }
        return try waiter.withWaiter { (waiter: inout Waiter) throws(QueueError) -> Int in
            try receive(into: buffer, timeout: timeout, waiter: &waiter)
        }
    }


    /// `receive(into:)` with a caller's `Waiter`, whose spin budget adapts
    /// across calls (a port keeps one for its life).
    package func receive(into buffer: UnsafeMutableRawBufferPointer, timeout: Duration?, waiter: inout Waiter) throws(QueueError) -> Int {
        if let n = try tryReceive(into: buffer) { return n }
        let end = deadline(after: timeout)
        while true {
            let ready = waiter.wait(on: notEmpty, deadline: end, slice: 20_000_000, ready: { self.looksNotEmpty() },
                                    keepWaiting: { self.recoverAbandonedSlots(); return true })
            if let n = try tryReceive(into: buffer) { return n }
            if !ready, let end, monotonicNanoseconds() >= end { throw .timedOut(after: timeout) }
            if ready { recoverAbandonedSlots() } // a READY-looking head we could not take: maybe a dead writer
        }
    }

    /// The next message as a new array (allocates), waiting at most `timeout`.
    public func receive(timeout: Duration? = nil) throws(QueueError) -> [UInt8] {
        try receiveArray { (raw) throws(QueueError) in try receive(into: raw, timeout: timeout) }!
    }

    /// The next message as a new array (allocates), or nil if empty.
    public func tryReceive() throws(QueueError) -> [UInt8]? {
        try receiveArray { (raw) throws(QueueError) in try tryReceive(into: raw) }
    }

    /// The next message as a value of a trivially copyable type; the message
    /// must be exactly `MemoryLayout<T>.size` bytes (`.sizeMismatch`).
    public func receive<T: BitwiseCopyable>(_ type: T.Type, timeout: Duration? = nil) throws(QueueError) -> T {
        try receiveValue(type) { (buffer) throws(QueueError) in try receive(into: buffer, timeout: timeout) }!
    }

    /// Like `receive(_:timeout:)` without waiting: nil if empty.
    public func tryReceive<T: BitwiseCopyable>(_ type: T.Type) throws(QueueError) -> T? {
        try receiveValue(type) { (buffer) throws(QueueError) in try tryReceive(into: buffer) }
    }

    func receiveArray(_ take: (UnsafeMutableRawBufferPointer) throws(QueueError) -> Int?) throws(QueueError) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: slotSize)
        let n = try buffer.withUnsafeMutableBytes { raw in Result { () throws(QueueError) in try take(raw) } }.get()
        guard let n else { return nil }
        buffer.removeLast(slotSize - n)
        return buffer
    }

    func receiveValue<T: BitwiseCopyable>(_ type: T.Type, _ take: (UnsafeMutableRawBufferPointer) throws(QueueError) -> Int?) throws(QueueError) -> T? {
        precondition(MemoryLayout<T>.size <= slotSize, "\(T.self) is larger than a slot")
        return try withUnsafeTemporaryAllocation(byteCount: slotSize, alignment: 16) { buffer in
            Result { () throws(QueueError) -> T? in
                guard let n = try take(buffer) else { return nil }
                guard n == MemoryLayout<T>.size else { throw .sizeMismatch(expected: MemoryLayout<T>.size, actual: n) }
                return buffer.load(as: T.self)
            }
        }.get()
    }

    /// Claims the slot at the dequeue position if it holds a message:
    /// returns it, its lap and the validated length.
    @inline(__always)
    func claimForReading(bufferSize: Int) throws(QueueError) -> (UnsafeMutableRawPointer, UInt64, Int)? {
        var d = dequeuePos.pointee.load(ordering: .relaxed)
        var stale = 0
        while true {
            let slot = slot(d), lap = lap(ofPosition: d)
            let word = stateWord(slot)
            // SYNC POINT: acquire pairs with the producer's seq_cst store of
            // READY in `publish`: the payload and length are visible.
            let w = word.pointee.load(ordering: .acquiring)
            let distance = MessageQueue.lapDistance(w, from: lap)
            let state = MessageQueue.state(w)
            if distance == 0 && state == MessageQueue.ready {
                let length = Int(slot.load(fromByteOffset: SlotOffset.length, as: UInt32.self))
                guard length <= slotSize else {
                    // A length no producer could write: drop the slot, keep the queue.
                    // SYNC POINT: acquire-release CAS pairs with the producers' acquire loads in
                    // `claimForWriting`: the slot is free for the next lap.
                    if word.pointee.compareExchange(expected: w, desired: MessageQueue.encode(lap: lap &+ 1, state: MessageQueue.free, claimant: 0),
                                                    ordering: .acquiringAndReleasing).exchanged {
                        corruptSlots.pointee.wrappingAdd(1, ordering: .relaxed)
                        _ = dequeuePos.pointee.compareExchange(expected: d, desired: d &+ 1, ordering: .relaxed)
                        notFull.wakeIfSleeping()
                        throw .corruptRecord(offset: Int(d & mask), reason: "slot length \(length) exceeds slot size \(slotSize)")
                    }
                    d = dequeuePos.pointee.load(ordering: .relaxed)
                    continue
                }
                guard length <= bufferSize else { throw .bufferTooSmall(needed: length, available: bufferSize) }
                // SYNC POINT: acquire CAS (with the acquire load above) pairs with the
                // producer's seq_cst READY store in `publish`; it makes the slot ours.
                if word.pointee.compareExchange(expected: w, desired: MessageQueue.encode(lap: lap, state: MessageQueue.reading, claimant: me),
                                                ordering: .acquiring).exchanged {
                    _ = dequeuePos.pointee.compareExchange(expected: d, desired: d &+ 1, ordering: .relaxed)
                    return (slot, lap, length)
                }
                d = dequeuePos.pointee.load(ordering: .relaxed)
            } else if distance == 0 && (state == MessageQueue.free || state == MessageQueue.writing) {
                return nil // nothing written here yet, or still being written
            } else if (distance == 0 && state == MessageQueue.reading) || (distance == 1 && state == MessageQueue.free) {
                // Taken by another consumer, or already drained: help the position on.
                _ = dequeuePos.pointee.compareExchange(expected: d, desired: d &+ 1, ordering: .relaxed)
                d = dequeuePos.pointee.load(ordering: .relaxed)
            } else if distance == MessageQueue.lapMask {
                return nil // the previous lap's reader is still finishing here: empty for us
            } else {
                let fresh = dequeuePos.pointee.load(ordering: .relaxed)
                if fresh == d { stale += 1 } else { stale = 0 }
                if stale > 2 {
                    throw .corruptIndices("slot \(d & mask) holds lap \(MessageQueue.lap(w)) state \(state) at dequeue position \(d) (lap \(lap))")
                }
                d = fresh
            }
        }
    }

    @inline(__always)
    func release(_ slot: UnsafeMutableRawPointer, lap: UInt64) {
        // SYNC POINT: seq_cst store hands the slot back to producers (pairs
        // with the acquire load in `claimForWriting`) and orders the sleepers
        // check after it.
        stateWord(slot).pointee.store(MessageQueue.encode(lap: lap &+ 1, state: MessageQueue.free, claimant: 0), ordering: .sequentiallyConsistent)
        notFull.wakeIfSleeping()
    }

    // MARK: Waiting conditions (seq_cst loads, see Parker)

    package func looksNotEmpty() -> Bool {
        // SYNC POINT (Dekker): seq_cst loads pair with `Parker.sleep`'s announcement
        // and the producer's seq_cst READY store in `publish`.
        let d = dequeuePos.pointee.load(ordering: .sequentiallyConsistent)
        let w = stateWord(slot(d)).pointee.load(ordering: .sequentiallyConsistent)
        return MessageQueue.lapDistance(w, from: lap(ofPosition: d)) == 0 && MessageQueue.state(w) == MessageQueue.ready
    }

    func looksNotFull() -> Bool {
        // SYNC POINT (Dekker): seq_cst loads pair with `Parker.sleep`'s announcement
        // and the consumer's seq_cst FREE store in `release`.
        let p = enqueuePos.pointee.load(ordering: .sequentiallyConsistent)
        let w = stateWord(slot(p)).pointee.load(ordering: .sequentiallyConsistent)
        return MessageQueue.lapDistance(w, from: lap(ofPosition: p)) != MessageQueue.lapMask
    }

    // MARK: Recovery

    /// Frees what dead processes left half-done at the head and tail of the
    /// queue: a slot whose writer died mid-write is skipped (its message is
    /// lost), a slot whose reader died mid-read is freed. Returns how many
    /// slots were recovered. Blocking calls run this while they wait; call
    /// it yourself if you only use the `try` forms.
    @discardableResult
    public func recoverAbandonedSlots() -> Int {
        var recovered = 0
        // Consumer side: the slot at the dequeue position.
        // SYNC POINT: acquire loads (and the acquire-release CASes below) pair with
        // the dead claimant's last release, if it got that far, and with other
        // recoverers' CASes: a slot is recovered once.
        let d = dequeuePos.pointee.load(ordering: .acquiring)
        let headSlot = stateWord(slot(d))
        let hw = headSlot.pointee.load(ordering: .acquiring)
        let headLap = lap(ofPosition: d)
        // A reader or writer of the previous lap that died here leaves the
        // slot unusable for this lap: give it to this lap's producers.
        if MessageQueue.lapDistance(hw, from: headLap) == MessageQueue.lapMask,
           MessageQueue.state(hw) == MessageQueue.writing || MessageQueue.state(hw) == MessageQueue.reading,
           MessageQueue.claimantIsDead(hw),
           // SYNC POINT: acquire-release CAS: one recoverer wins (see above).
           headSlot.pointee.compareExchange(expected: hw, desired: MessageQueue.encode(lap: headLap, state: MessageQueue.free, claimant: 0),
                                            ordering: .acquiringAndReleasing).exchanged {
            (MessageQueue.state(hw) == MessageQueue.writing ? lostProducers : lostConsumers).pointee.wrappingAdd(1, ordering: .relaxed)
            recovered += 1
            notFull.wake(count: .max)
        }
        if MessageQueue.lapDistance(hw, from: headLap) == 0,
           MessageQueue.state(hw) == MessageQueue.writing || MessageQueue.state(hw) == MessageQueue.reading,
           MessageQueue.claimantIsDead(hw),
           // SYNC POINT: acquire-release CAS: one recoverer wins (see above).
           headSlot.pointee.compareExchange(expected: hw, desired: MessageQueue.encode(lap: headLap &+ 1, state: MessageQueue.free, claimant: 0),
                                            ordering: .acquiringAndReleasing).exchanged {
            (MessageQueue.state(hw) == MessageQueue.writing ? lostProducers : lostConsumers).pointee.wrappingAdd(1, ordering: .relaxed)
            _ = dequeuePos.pointee.compareExchange(expected: d, desired: d &+ 1, ordering: .relaxed)
            recovered += 1
            notFull.wake(count: .max)
        }
        // Producer side: a slot of the previous lap held by a dead writer or reader.
        // SYNC POINT: as on the consumer side above.
        let p = enqueuePos.pointee.load(ordering: .acquiring)
        let tailSlot = stateWord(slot(p))
        let tw = tailSlot.pointee.load(ordering: .acquiring)
        let tailLap = lap(ofPosition: p)
        if MessageQueue.lapDistance(tw, from: tailLap) == MessageQueue.lapMask,
           MessageQueue.state(tw) == MessageQueue.writing || MessageQueue.state(tw) == MessageQueue.reading,
           MessageQueue.claimantIsDead(tw),
           // SYNC POINT: acquire-release CAS: one recoverer wins (see above).
           tailSlot.pointee.compareExchange(expected: tw, desired: MessageQueue.encode(lap: tailLap, state: MessageQueue.free, claimant: 0),
                                            ordering: .acquiringAndReleasing).exchanged {
            (MessageQueue.state(tw) == MessageQueue.writing ? lostProducers : lostConsumers).pointee.wrappingAdd(1, ordering: .relaxed)
            recovered += 1
            notFull.wake(count: .max)
        }
        return recovered
    }

    // MARK: Diagnostics

    /// Messages lost because their producer died mid-write.
    public var lostToDeadProducers: UInt64 { lostProducers.pointee.load(ordering: .relaxed) }
    /// Messages lost because their consumer died mid-read.
    public var lostToDeadConsumers: UInt64 { lostConsumers.pointee.load(ordering: .relaxed) }
    /// Slots dropped because their contents were invalid.
    public var corruptSlotCount: UInt64 { corruptSlots.pointee.load(ordering: .relaxed) }

    /// Approximate number of queued messages.
    public var approximateCount: Int {
        let p = enqueuePos.pointee.load(ordering: .relaxed), d = dequeuePos.pointee.load(ordering: .relaxed)
        return p >= d ? min(Int(p - d), capacity) : 0
    }

    /// Test hook: claims a slot for writing and never publishes it, as a
    /// producer killed mid-write would. Returns false if the queue is full.
    package func claimAndAbandonForTesting() throws(QueueError) -> Bool {
        try claimForWriting() != nil
    }
}
