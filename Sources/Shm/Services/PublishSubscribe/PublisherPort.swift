import ShmSystem
@_spi(ShmInternals) import ShmPrimitives

/// The machinery of a publisher, independent of its payload type (so the
/// hot path runs as plain, non-generic code): the sample pool, the
/// bookkeeping of who holds which chunk, and the connections to the
/// subscribers' inboxes.
///
/// Hot path of one send, in shared memory: write the chunk's header and
/// payload, push its reference into each subscriber's delivery queue, bump
/// the delivered counter (a line only this publisher writes). Released
/// chunks are collected from the return queues only when the free list runs
/// dry, so a send does not read lines the subscribers are writing.
@usableFromInline
final class PublisherPort: @unchecked Sendable {
    let attachment: ServiceAttachment
    let layout: ServiceLayout
    let config: PublishSubscribeConfig
    let serviceName: String
    let portID: UInt64
    /// Our slot in the port table, shared with our receiving half if we
    /// are a client's or server's sending half.
    let registration: PortRegistration
    /// Our slot index, and so our block in every receiver's inbox.
    var slotIndex: Int { registration.index }
    /// Which table we send from and which we deliver to.
    let direction: PortDirection
    /// The pool's segments and per-chunk bookkeeping (chunks are named by
    /// slot here: `SenderPool`).
    let pool: SenderPool

    @exclusivity(unchecked) var sendTimeout: Duration? = .seconds(1)
    /// How a send waits for room under `.block` (spin, then sleep on the
    /// full connection's space parker until the subscriber pops); the
    /// budget learns across sends.
    @exclusivity(unchecked) var waiter = Waiter(.default)

    /// Scalars the hot path updates, behind a pointer (no exclusivity
    /// checks, no copy-on-write): this process's memory, not shared.
    struct Local {
        var loanedCount = 0
        var sequence: UInt64 = 0
        var knownVersion: UInt64 = .max
        /// Subscribers whose block we could not claim yet.
        var pendingClaims = 0
        /// Sends that met a full queue since the last sweep for dead
        /// subscribers. A dead subscriber's queue fills and stays full; a
        /// live one that keeps up never does — so a healthy steady state
        /// never sweeps (a sweep copies the port table into an array and
        /// tests leases: allocations and syscalls on the hot path).
        var congestedSends = 0
        /// The send in progress met a full queue.
        var congested = false
        /// Entries in `freeChunks`.
        var freeCount = 0
        /// Entries in `links`.
        var linkCount = 0
        /// The `Publisher` is gone while samples were still loaned: the port
        /// keeps itself alive until the last of them is sent or dropped.
        var retired = false
        /// Where `deliverToOne` starts looking (round robin over receivers).
        var nextLink = 0
        /// Bytes the loanable chunks hold (a larger loan grows the pool).
        var capacity = 0
    }

    let local: UnsafeMutablePointer<Local>
    /// Slots of chunks nobody holds (a stack: the most recently freed,
    /// warmest, first).
    let freeChunks: UnsafeMutablePointer<Int32>
    /// Per slot (`pool`'s arrays): receivers holding the chunk (queued or
    /// borrowed) + 1 if in the history + 1 while it is being delivered;
    /// `SenderPool.retiredBit` if its segment is retired.
    let holders: UnsafeMutablePointer<UInt32>
    /// Per slot: the chunk's header address and its ID (segment, index).
    let chunkAddress: UnsafeMutablePointer<UnsafeMutableRawPointer>
    let chunkIDs: UnsafeMutablePointer<UInt32>
    let payloadOffset: Int
    /// Slots: the most chunks the pool's live segments may have.
    let chunkCount: Int
    /// The last `historySize` chunks sent: a ring, oldest at `historyStart`.
    var history: [Int] = []
    var historyStart = 0
    /// Every subscriber we know, by port ID.
    var connections: [UInt64: OutboundConnection] = [:]
    /// The subscribers we deliver to (block claimed).
    var active: [DeliveryLink] = [] { didSet { syncLinks() } }
    /// `active` as plain values for the send loop: no reference counting.
    let links: UnsafeMutablePointer<DeliveryLink.State>

    /// A publisher: creates its pool, registers in the service, connects.
    convenience init(attachment: ServiceAttachment, config: PublishSubscribeConfig, payloadType: PayloadType, elementStride: Int,
                     allocation: PoolAllocation) throws(ServiceError) {
        let id = UInt64.random(in: 1...UInt64.max)
        let plan = PoolPlan(payloadType: payloadType, slots: config.chunksPerPublisher, allocation: allocation,
                            initialBytes: { $0 * elementStride })
        let poolSegment = try PublisherPort.createPool(attachment: attachment, portID: id, plan: plan)
        let registration: PortRegistration
        do {
            // Block i of every inbox belongs to publisher slot i: prefer a slot
            // whose blocks are free, not one whose departed publisher's
            // samples still wait to be read (we could not deliver there yet).
            registration = try PortRegistration(layout: attachment.layout, table: .producers, portID: id,
                                                nodeHash: attachment.node.hash, halves: 1,
                                                avoiding: attachment.layout.blocksInUse(.toConsumers))
        } catch {
            poolSegment.unlinkIfStillLinked()
            throw error
        }
        try self.init(attachment: attachment, config: config, direction: .toConsumers, poolSegment: poolSegment, plan: plan,
                      registration: registration)
    }

    /// What a sender's pool is made of: its limits, and its first segment.
    struct PoolPlan {
        /// Alignment of the payload (and so of every chunk's payload).
        let alignment: Int
        /// The most bytes a sample may have: whole elements of the payload.
        let maxCapacity: Int
        /// Chunks in flight at most (the live segments' chunks together).
        let slots: Int
        /// nil: reserved (the first segment is all there is).
        let initialChunks: Int?
        let firstChunks: Int
        let firstCapacity: Int

        /// - Parameter initialBytes: the bytes of a growing pool's first
        ///   chunks, given its initial length in elements.
        init(payloadType: PayloadType, slots: Int, allocation: PoolAllocation, initialBytes: (Int) -> Int) {
            alignment = max(1, payloadType.alignment)
            maxCapacity = SenderPool.aligned(payloadType.size, alignment)
            self.slots = slots
            let reservedBytes = ChunkPool.size(chunkCount: slots, payloadCapacity: maxCapacity, alignment: alignment)
            switch allocation.resolved(reservedBytes: reservedBytes).kind {
            case .growing(let chunks, let length):
                initialChunks = chunks
                firstChunks = min(chunks, slots)
                firstCapacity = SenderPool.chunkCapacity(for: initialBytes(length), alignment: alignment, maximum: maxCapacity)
            case .reserved, .automatic:
                initialChunks = nil
                firstChunks = slots
                firstCapacity = maxCapacity
            }
        }
    }

    /// Creates segment 0 of port `portID`'s pool (`svc.<service>.p<id>`):
    /// before the port registers, so that receivers who see the
    /// registration can map it.
    static func createPool(attachment: ServiceAttachment, portID id: UInt64, plan: PoolPlan) throws(ServiceError) -> SharedMemorySegment {
        try SenderPool.createSegment(name: attachment.name, portID: id, number: 0, chunks: plan.firstChunks,
                                     capacity: plan.firstCapacity, alignment: plan.alignment)
    }

    /// The sending half of a registered port, over a pool made by
    /// `createPool` from `plan`. On failure the pool is unlinked and the
    /// registration left.
    init(attachment: ServiceAttachment, config: PublishSubscribeConfig, direction: PortDirection,
         poolSegment: SharedMemorySegment, plan: PoolPlan, registration: PortRegistration) throws(ServiceError) {
        self.attachment = attachment
        layout = attachment.layout
        self.config = config
        self.direction = direction
        self.registration = registration
        serviceName = attachment.name.value
        let id = registration.portID
        let chunks = plan.slots
        do {
            pool = try SenderPool(first: poolSegment, name: attachment.name, portID: id, alignment: plan.alignment,
                                  maxCapacity: plan.maxCapacity, slotLimit: chunks, initialChunks: plan.initialChunks)
        } catch {
            registration.leave()
            poolSegment.unlinkIfStillLinked()
            throw error
        }
        portID = id
        chunkCount = chunks
        holders = pool.holders
        chunkAddress = pool.address
        chunkIDs = pool.ids
        payloadOffset = pool.payloadOffset
        local = .allocate(capacity: 1)
        local.initialize(to: Local())
        local.pointee.capacity = pool.capacity
        freeChunks = .allocate(capacity: chunks)
        let first = pool.segments[0].slots
        let firstCount = pool.segments[0].pool.chunkCount
        for i in 0..<firstCount { freeChunks[i] = first[firstCount - 1 - i] }
        local.pointee.freeCount = firstCount
        links = .allocate(capacity: config.maxSubscribers)
        try updateConnections(force: true)
    }

    deinit {
        if registration.leave(pool: direction) {
            // Dekker with `ServiceLayout.removeDepartedPoolIfUnawaited`, which
            // subscribers run after mapping our pool or freeing our block: either
            // we see their `attached`, or they see us gone from the table.
            SampleInbox.fenceAfterLeaving()
            // Samples we sent stay receivable: the pool keeps its name while a
            // subscriber that has not mapped it has references from us queued
            // (DepartedPools.swift); that subscriber removes the name.
            let segments = pool.nextNumber
            if !active.contains(where: { $0.inbox.awaits(portID, block: slotIndex, segments: segments) }) {
                pool.unlinkAll()
            }
        }
        // (Else our receiving half still holds the slot: the pool's name is
        // settled when it leaves.)
        for connection in connections.values {
            // Leave the block to its subscriber, which recycles it once drained.
            connection.inbox.parker.wake(count: 1)
        }
        local.deallocate()
        freeChunks.deallocate()
        links.deallocate()
    }

    func syncLinks() {
        let count = min(active.count, config.maxSubscribers)
        for i in 0..<count { (links + i).initialize(to: active[i].state) }
        local.pointee.linkCount = count
    }

    // MARK: Loaning

    /// A free chunk of at least `bytes` bytes, loaned to the caller (its slot).
    @inline(__always)
    @usableFromInline
    func takeChunk(bytes: Int) throws(ServiceError) -> Int {
        let state = local
        guard state.pointee.loanedCount < config.maxLoans else { throw .tooManyLoans(maximum: config.maxLoans) }
        if layout.version != state.pointee.knownVersion || state.pointee.pendingClaims > 0 { try updateConnections(force: false) }
        if bytes > state.pointee.capacity { try growForLargerChunks(bytes) }
        if state.pointee.freeCount == 0 { try refill() }
        guard state.pointee.freeCount > 0 else { throw .poolExhausted(service: serviceName, chunks: chunkCount) }
        state.pointee.freeCount -= 1
        state.pointee.loanedCount += 1
        return Int(freeChunks[state.pointee.freeCount])
    }

    /// Collects what subscribers released; then, if still nothing is free,
    /// grows the pool (if it may), else looks for subscribers that died
    /// holding samples.
    func refill() throws(ServiceError) {
        reclaimReturns()
        if local.pointee.freeCount == 0, let segment = try pool.grow(toFit: 0) { adopt(segment) }
        if local.pointee.freeCount == 0 {
            sweepDeadSubscribers()
            reclaimReturns()
        }
    }

    /// A loan wants more bytes than the chunks hold: a segment of larger
    /// chunks replaces the others, which retire (slow path; nil if the pool
    /// is reserved — the caller checked `bytes` against the service's maximum).
    @inline(never)
    func growForLargerChunks(_ bytes: Int) throws(ServiceError) {
        reclaimReturns() // free what came back first: retired segments may go at once
        guard let segment = try pool.grow(toFit: bytes, freeing: local.pointee.freeCount) else {
            throw .poolExhausted(service: serviceName, chunks: chunkCount)
        }
        pool.retireAll(free: UnsafeBufferPointer(start: freeChunks, count: local.pointee.freeCount),
                       newCapacity: segment.pool.payloadCapacity)
        local.pointee.freeCount = 0
        adopt(segment)
        local.pointee.capacity = pool.capacity
    }

    /// Makes a new segment's chunks loanable, and announces it to receivers
    /// before any reference into it can be sent.
    func adopt(_ segment: SenderPool.Segment) {
        for slot in pool.adopt(segment) {
            freeChunks[local.pointee.freeCount] = slot
            local.pointee.freeCount += 1
        }
        pool.publishSegmentCount()
    }

    /// Gives an unsent loan back. Returns true if that was the last loan of
    /// a retired port, which the caller must then release (`retire`).
    @usableFromInline
    func returnLoan(_ chunk: Int) -> Bool {
        local.pointee.loanedCount -= 1
        if holders[chunk] == 0 { free(chunk) } else if holders[chunk] == SenderPool.retiredBit { pool.retiredChunkFreed(chunk) }
        return local.pointee.retired && local.pointee.loanedCount == 0
    }

    /// The payload of the chunk in `slot`.
    @inline(__always)
    @usableFromInline
    func payload(_ slot: Int) -> UnsafeMutableRawPointer { chunkAddress[slot] + payloadOffset }

    /// Called when the `Publisher` goes. Samples refer to the port without
    /// reference counting (an atomic increment and decrement per sample
    /// otherwise); while any is still loaned the port retains itself, and
    /// the last one to go releases it (`Unmanaged.release`).
    func retire() {
        guard local.pointee.loanedCount > 0 else { return }
        local.pointee.retired = true
        _ = Unmanaged.passRetained(self)
    }

    /// True if a loan just ended was the last one of a retired port.
    @usableFromInline
    var lastLoanOfRetiredPort: Bool { local.pointee.retired && local.pointee.loanedCount == 0 }

    @inline(__always)
    func free(_ chunk: Int) {
        freeChunks[local.pointee.freeCount] = Int32(chunk)
        local.pointee.freeCount += 1
    }

    // MARK: Sending

    /// Delivers a written chunk to every connected subscriber; returns how many it reached.
    @usableFromInline
    func deliver(chunk: Int, bytes: Int) throws(ServiceError) -> Int {
        let state = local
        state.pointee.sequence &+= 1
        try prepare(chunk: chunk, bytes: bytes, sequence: state.pointee.sequence)
        let value = ChunkReference.encode(id: chunkIDs[chunk], length: bytes)
        var reached = 0
        // Hold the chunk ourselves while delivering: a fast subscriber may
        // hand it back before we have pushed it to the others.
        holders[chunk] += 1
        defer { release(chunk) }
        state.pointee.congested = false
        for i in 0..<state.pointee.linkCount {
            if try push(value, chunk: chunk, to: links + i) { reached += 1 }
        }
        if config.historySize > 0 { remember(chunk) }
        if state.pointee.congested {
            state.pointee.congestedSends += 1
            if state.pointee.congestedSends >= 4096 { sweepDeadSubscribers() }
        }
        prefetchNextLoan()
        return reached
    }

    /// Ends the loan of a written chunk and writes its header (`sequence`:
    /// the sample's number, or a request's ID) before it is delivered.
    @inline(__always)
    func prepare(chunk: Int, bytes: Int, sequence: UInt64) throws(ServiceError) {
        let state = local
        state.pointee.loanedCount -= 1
        // The next loan takes the top of the free stack: say which, so a
        // spinning receiver fetches that line while it polls (`ChunkOffset.next`).
        let next = state.pointee.freeCount > 0 ? chunkIDs[Int(freeChunks[state.pointee.freeCount - 1])] : ChunkPool.noHint
        ChunkPool.setHeader(chunkAddress[chunk], sequence: sequence, length: bytes, next: next)
        if layout.version != state.pointee.knownVersion || state.pointee.pendingClaims > 0 { try updateConnections(force: false) }
    }

    /// The next loan takes the top of the free stack: fetch its header line
    /// for writing now, while nobody waits on us.
    @inline(__always)
    func prefetchNextLoan() {
        if local.pointee.freeCount > 0 { CPU.prefetchForWrite(chunkAddress[Int(freeChunks[local.pointee.freeCount - 1])]) }
    }

    /// How a delivery to one receiver ended (request/response).
    enum SingleDelivery {
        case delivered(to: UInt64)
        /// No receiver is connected (none registered, or the one named left).
        case noReceiver
        /// The receiver's queue stayed full until the deadline.
        case timedOut
    }

    /// Delivers a written chunk to receiver `portID` only (a server's
    /// response to its client), waiting under `sendTimeout` for room.
    func deliver(chunk: Int, bytes: Int, sequence: UInt64, to portID: UInt64) throws(ServiceError) -> SingleDelivery {
        try prepare(chunk: chunk, bytes: bytes, sequence: sequence)
        holders[chunk] += 1
        defer { release(chunk) }
        var index = link(of: portID)
        if index == nil {
            // A receiver that registered since we last looked (slow path).
            try updateConnections(force: true)
            index = link(of: portID)
        }
        guard let index else { return .noReceiver }
        return try finishSingle(chunk: chunk, bytes: bytes, index: index)
    }

    /// True if at least one receiver is connected (after taking in those
    /// that registered since we last looked).
    @inline(__always)
    func hasReceivers() throws(ServiceError) -> Bool {
        if layout.version != local.pointee.knownVersion || local.pointee.pendingClaims > 0 { try updateConnections(force: false) }
        return local.pointee.linkCount > 0
    }

    /// Delivers a written chunk to one connected receiver, round robin,
    /// passing over receivers whose queue is full (a client's request to
    /// one of the servers); waits under `sendTimeout` for a receiver to
    /// connect and for room.
    func deliverToOne(chunk: Int, bytes: Int, sequence: UInt64) throws(ServiceError) -> SingleDelivery {
        try prepare(chunk: chunk, bytes: bytes, sequence: sequence)
        holders[chunk] += 1
        defer { release(chunk) }
        let state = local
        var deadline: UInt64?
        while state.pointee.linkCount == 0 {
            let now = monotonicNanoseconds()
            if deadline == nil { deadline = sendTimeout.map { now &+ $0.nanoseconds } }
            if let deadline, now >= deadline { return .noReceiver }
            sleepNanoseconds(200_000) // waiting for a receiver to start: not a hot path
            try updateConnections(force: false)
        }
        let count = state.pointee.linkCount
        var index = state.pointee.nextLink < count ? state.pointee.nextLink : 0
        for _ in 0..<count {
            if links[index].writer.hasRoom() { break }
            index = index + 1 == count ? 0 : index + 1
        }
        state.pointee.nextLink = index + 1 == count ? 0 : index + 1
        return try finishSingle(chunk: chunk, bytes: bytes, index: index)
    }

    @inline(__always)
    private func finishSingle(chunk: Int, bytes: Int, index: Int) throws(ServiceError) -> SingleDelivery {
        let receiver = links[index].portID
        local.pointee.congested = false
        let pushed = try push(ChunkReference.encode(id: chunkIDs[chunk], length: bytes), chunk: chunk, to: links + index)
        if local.pointee.congested {
            local.pointee.congestedSends += 1
            if local.pointee.congestedSends >= 4096 { sweepDeadSubscribers() }
        }
        prefetchNextLoan()
        if pushed { return .delivered(to: receiver) }
        return receiverIsRegistered(receiver) ? .timedOut : .noReceiver
    }

    /// Whether receiver `portID`'s queue has room now, without taking a
    /// chunk: a responder that finds it full waits for room outside its lock.
    enum Room {
        case room
        /// Full: the link (retained, so its mapping stays while we wait).
        case full(DeliveryLink)
        case noReceiver
    }

    func room(for portID: UInt64) throws(ServiceError) -> Room {
        if layout.version != local.pointee.knownVersion || local.pointee.pendingClaims > 0 { try updateConnections(force: false) }
        var index = link(of: portID)
        if index == nil {
            try updateConnections(force: true)
            index = link(of: portID)
        }
        guard let index else { return .noReceiver }
        if links[index].writer.hasRoom() { return .room }
        guard let link = connections[portID]?.link else { return .noReceiver }
        return .full(link)
    }

    /// True if some connected receiver's queue has room now.
    func anyReceiverHasRoom() -> Bool {
        (0..<local.pointee.linkCount).contains { links[$0].writer.hasRoom() }
    }

    /// The index in `links` of receiver `portID`.
    @inline(__always)
    func link(of portID: UInt64) -> Int? {
        for i in 0..<local.pointee.linkCount where links[i].portID == portID { return i }
        return nil
    }

    /// True if receiver `portID` is registered by a live process (slow path).
    func receiverIsRegistered(_ portID: UInt64) -> Bool {
        layout.entries(direction.receivers).contains { $0.portID == portID && $0.owner.isAlive }
    }

    /// Pushes one reference into a subscriber's queue under the overflow policy.
    @inline(__always)
    func push(_ value: UInt64, chunk: Int, to pointer: UnsafeMutablePointer<DeliveryLink.State>) throws(ServiceError) -> Bool {
        let link = pointer.pointee
        var deadline: UInt64?
        var waited = false
        while true {
            let outcome: IndexQueue.Producer.Outcome
            do {
                outcome = try link.writer.push(value, overwrite: config.overflow == .overwriteOldest,
                                               consumerMayPark: link.mayPark)
            } catch {
                // The subscriber's queue is damaged: stop delivering to it.
                if let connection = connections[link.portID] { disconnect(connection) }
                throw .corrupt(service: serviceName, reason: "subscriber \(link.portID): \(error)")
            }
            switch outcome {
            case .pushed:
                break
            case .pushedDropping(let dropped):
                local.pointee.congested = true
                link.count(lost: 1)
                if let slot = pool.slot(ofID: ChunkReference.id(dropped)) { unhold(slot, by: link) }
            case .full:
                local.pointee.congested = true
                if config.overflow == .discard {
                    link.count(lost: 1)
                    return false
                }
                // .block: wait (at most sendTimeout) for the subscriber to
                // make room, with the port's waiter on this connection's
                // space parker (the subscriber wakes it after a pop).
                let now = monotonicNanoseconds()
                if !waited {
                    waited = true
                    deadline = sendTimeout.map { now &+ $0.nanoseconds }
                }
                if let deadline, now >= deadline {
                    link.count(lost: 1)
                    return false
                }
                if !waitForRoom(pointer, deadline: deadline) {
                    link.count(lost: 1)
                    return false
                }
                continue
            }
            link.outstanding[chunk] += 1
            holders[chunk] += 1
            link.count(delivered: 1)
            if link.mayPark { link.parker.wakeIfSleeping() }
            return true
        }
    }

    /// Waits (`.block`) with the port's waiter on the connection's space
    /// parker until the receiver made room (it wakes us after a pop), the
    /// deadline passed, or the receiver is gone. Returns false for the last
    /// two. Out of line: the send's fast path stays small.
    @inline(never)
    func waitForRoom(_ pointer: UnsafeMutablePointer<DeliveryLink.State>, deadline: UInt64?) -> Bool {
        let link = pointer.pointee
        // A sleeping receiver has work: make sure it is awake.
        if link.mayPark { link.parker.wakeIfSleeping() }
        let writer = link.writer
        var w = waiter // a local copy, stored back: no access to the port held across the wait
        defer { waiter = w }
        // Every 10 ms slice: a receiver that died or left does not make us
        // wait out the whole timeout.
        let knownVersion = local.pointee.knownVersion, receiver = link.portID
        let stillThere = w.wait(on: link.spaceParker, deadline: deadline, slice: 10_000_000, ready: { writer.hasRoom() },
                                keepWaiting: {
                                    self.reclaimReturns()
                                    return self.layout.version == knownVersion || self.receiverIsRegistered(receiver)
                                })
        return stillThere || writer.hasRoom() || receiverIsRegistered(receiver)
    }

    // MARK: Pool bookkeeping

    /// Keeps `chunk` for late joiners, letting go of the oldest kept one.
    func remember(_ chunk: Int) {
        holders[chunk] += 1
        if history.count < config.historySize {
            history.append(chunk)
            return
        }
        let oldest = history[historyStart]
        history[historyStart] = chunk
        historyStart = historyStart + 1 == history.count ? 0 : historyStart + 1
        release(oldest)
    }

    /// Takes back what subscribers released.
    func reclaimReturns() {
        for i in 0..<local.pointee.linkCount {
            let link = links[i]
            // Return queues are never overwritten: head is ours alone.
            while let value = link.returns.popExclusive() {
                // Never trust a returned ID: it must name a chunk we gave this subscriber.
                guard let chunk = pool.slot(ofID: ChunkReference.id(value)), link.outstanding[chunk] > 0 else { continue }
                unhold(chunk, by: link)
            }
        }
    }

    @inline(__always)
    func unhold(_ chunk: Int, by link: DeliveryLink.State) {
        guard chunk < chunkCount, link.outstanding[chunk] > 0 else { return }
        link.outstanding[chunk] -= 1
        release(chunk)
    }

    @inline(__always)
    func release(_ chunk: Int) {
        let held = holders[chunk]
        guard held & ~SenderPool.retiredBit > 0 else { return }
        holders[chunk] = held - 1
        if held == 1 { free(chunk) } else if held == SenderPool.retiredBit | 1 { pool.retiredChunkFreed(chunk) }
    }

    // MARK: Connections

    /// Connects to new subscribers and drops departed ones when the service's
    /// port table changed; retries blocks we could not claim yet.
    func updateConnections(force: Bool) throws(ServiceError) {
        let version = layout.version
        if force || version != local.pointee.knownVersion {
            local.pointee.knownVersion = version
            let subscribers = layout.entries(direction.receivers)
            let current = Set(subscribers.map(\.portID))
            for (id, connection) in connections where !current.contains(id) { disconnect(connection) }
            for entry in subscribers where connections[entry.portID] == nil {
                guard let segment = try? SharedMemorySegment.open(attachment.name.portSegmentName(.inbox, entry.portID),
                                                                  kind: SampleInbox.kind, timeout: .milliseconds(100)),
                      let inbox = try? SampleInbox(segment.data, expectedPortID: entry.portID, service: serviceName),
                      slotIndex < inbox.maxPublishers else { continue }
                connections[entry.portID] = OutboundConnection(portID: entry.portID, segment: segment, inbox: inbox)
            }
        }
        claimPendingBlocks()
    }

    /// Claims our block in each subscriber's inbox once it is free.
    func claimPendingBlocks() {
        var pending = 0
        for connection in connections.values where connection.link == nil {
            guard connection.inbox.claim(slotIndex, for: portID),
                  let delivery = try? IndexQueue(attaching: connection.inbox.deliveryRegion(slotIndex)),
                  let producer = try? IndexQueue.Producer(delivery, limit: config.subscriberBufferSize),
                  let returns = try? IndexQueue(attaching: connection.inbox.returnRegion(slotIndex)) else {
                pending += 1
                continue
            }
            let link = DeliveryLink(connection: connection, block: slotIndex, producer: producer, returns: returns, chunks: chunkCount)
            connection.link = link
            active.append(link)
            // Late joiner: replay the history, oldest first.
            let state = UnsafeMutablePointer<DeliveryLink.State>.allocate(capacity: 1)
            state.initialize(to: link.state)
            for chunk in history[historyStart...] + history[..<historyStart] {
                let bytes = Int(chunkAddress[chunk].load(fromByteOffset: ChunkPool.ChunkOffset.length, as: UInt32.self))
                _ = try? push(ChunkReference.encode(id: chunkIDs[chunk], length: bytes), chunk: chunk, to: state)
            }
            state.deallocate()
            // The subscriber loads the epoch before it scans the owners of its blocks.
            connection.inbox.epoch.advance()
            connection.inbox.parker.wake(count: 1)
        }
        local.pointee.pendingClaims = pending
    }

    /// Forgets a subscriber and takes back every sample it held.
    func disconnect(_ connection: OutboundConnection) {
        if let link = connection.link {
            for chunk in 0..<chunkCount {
                while link.state.outstanding[chunk] > 0 { unhold(chunk, by: link.state) }
            }
            active.removeAll { $0 === link }
        } else {
            local.pointee.pendingClaims = max(0, local.pointee.pendingClaims - 1)
        }
        connections[connection.portID] = nil
    }

    /// Reclaims the service slots of dead subscribers (which bumps the
    /// service version, so the next update disconnects them).
    func sweepDeadSubscribers() {
        local.pointee.congestedSends = 0
        let entries = layout.entries(direction.receivers)
        let deadSubscribers = connections.keys.filter { id in !entries.contains { $0.portID == id && $0.owner.isAlive } }
        guard !deadSubscribers.isEmpty else { return }
        attachment.reclaimDeadPorts()
        // Only those that are really gone from the table: a liveness check
        // that failed for another reason (a /proc read) must not free the
        // chunks a live subscriber holds.
        let remaining = Set(layout.entries(direction.receivers).map(\.portID))
        for id in deadSubscribers where !remaining.contains(id) {
            if let connection = connections[id] { disconnect(connection) }
        }
    }

    /// Subscribers this publisher delivers to now.
    var connectedSubscribers: Int { active.count }

    var footprint: PoolFootprint {
        PoolFootprint(segments: pool.segments.count, bytes: pool.footprint, chunks: pool.chunks,
                      chunkCapacity: pool.capacity, grown: pool.grown, retired: pool.disposed)
    }

    var loanedCount: Int { local.pointee.loanedCount }

    func waitForSubscribers(_ count: Int, timeout: Duration?) throws(ServiceError) -> Bool {
        let end = deadline(after: timeout) ?? .max
        while true {
            try updateConnections(force: false)
            if connectedSubscribers >= count { return true }
            if monotonicNanoseconds() >= end { return false }
            sleepNanoseconds(1_000_000)
        }
    }
}

/// A publisher's connection to one subscriber's inbox.
final class OutboundConnection {
    let portID: UInt64
    let segment: SharedMemorySegment
    let inbox: SampleInbox
    /// Set once our block in the inbox is claimed.
    var link: DeliveryLink?

    init(portID: UInt64, segment: SharedMemorySegment, inbox: SampleInbox) {
        self.portID = portID
        self.segment = segment
        self.inbox = inbox
    }
}

/// What a send needs to deliver to one subscriber: its queues in our block
/// of its inbox, and which of our chunks it holds. Owns that memory; the
/// send loop works on `state`, a copy of plain values and pointers.
final class DeliveryLink {
    /// The hot-path view: no references, so copying it retains nothing.
    struct State {
        let portID: UInt64
        let writer: IndexQueue.Writer
        let returns: IndexQueue
        let parker: Parker
        /// Where we sleep while this subscriber's queue is full (`.block`).
        let spaceParker: Parker
        let counters: SampleInbox.SenderCounters
        /// The subscriber may sleep: publish with seq_cst and wake it.
        let mayPark: Bool
        /// Per chunk: how many references this subscriber holds.
        let outstanding: UnsafeMutablePointer<UInt16>
        /// Our running totals: [lost, delivered].
        let totals: UnsafeMutablePointer<UInt64>

        /// Counters live on a line only the publisher writes: plain stores, no RMW.
        @inline(__always)
        func count(delivered n: UInt64) {
            totals[1] &+= n
            counters.store(delivered: totals[1])
        }

        @inline(__always)
        func count(lost n: UInt64) {
            totals[0] &+= n
            counters.store(lost: totals[0])
        }
    }

    let segment: SharedMemorySegment
    let inbox: SampleInbox
    let producer: IndexQueue.Producer
    let state: State

    init(connection: OutboundConnection, block: Int, producer: IndexQueue.Producer, returns: IndexQueue, chunks: Int) {
        segment = connection.segment
        inbox = connection.inbox
        self.producer = producer
        let outstanding = UnsafeMutablePointer<UInt16>.allocate(capacity: chunks)
        outstanding.initialize(repeating: 0, count: chunks)
        let totals = UnsafeMutablePointer<UInt64>.allocate(capacity: 2)
        totals.initialize(repeating: 0, count: 2)
        state = State(portID: connection.portID, writer: producer.writer, returns: returns, parker: inbox.parker,
                      spaceParker: inbox.spaceParker(of: block), counters: inbox.counters(of: block), mayPark: inbox.subscriberMayPark, outstanding: outstanding, totals: totals)
    }

    deinit {
        state.outstanding.deallocate()
        state.totals.deallocate()
    }
}
