import ShmSystem
@_spi(ShmInternals) import ShmPrimitives

/// The machinery of a subscriber, independent of its payload type: the
/// inbox segment, the connections to publishers' pools, and the hand-back
/// of released samples.
///
/// Hot path of one receive: two loads that normally hit this core's cache
/// (the service's version and the inbox epoch: has anyone arrived or
/// left?), then a pop from each connected publisher's delivery queue — one
/// cache-line transfer for the queue entry, one for the payload when the
/// caller reads it.
@usableFromInline
final class SubscriberPort: @unchecked Sendable {
    let attachment: ServiceAttachment
    let layout: ServiceLayout
    let serviceName: String
    let serviceHash: UInt64
    let maxBorrowed: Int
    /// Overflow policy "overwrite oldest": publishers may take entries from
    /// our delivery queues, so popping needs a compare-and-swap.
    let producersDrop: Bool
    /// Overflow policy "block": a publisher may sleep on a full delivery
    /// queue, so each pop is followed by the wake-up check.
    let publishersWait: Bool
    /// Bytes per element, and the smallest valid sample (single-value services).
    let elementStride: Int
    let minimumBytes: Int
    /// `elementStride - 1` when the stride is a power of two (a length is
    /// then checked with a mask, not a division: a 64-bit `div` costs tens
    /// of cycles on every receive), else nil.
    let strideMask: Int?
    let portID: UInt64
    /// Our slot in the port table, shared with our sending half if we are
    /// a client's or server's receiving half.
    let registration: PortRegistration
    /// Which table our senders are in.
    let direction: PortDirection
    let inboxSegment: SharedMemorySegment
    let inbox: SampleInbox
    let epoch: SampleInbox.Epoch
    @exclusivity(unchecked) var waiter: Waiter

    /// Scalars the hot path updates, behind a pointer (no exclusivity
    /// checks); shared with the connections, which outlive us while a
    /// sample from them is borrowed.
    struct Local {
        var borrowed = 0
        var nextActive = 0
        var knownVersion: UInt64 = .max
        var knownEpoch: UInt32 = .max
        /// A block needs another look (a pool not mappable yet, a gone
        /// publisher's block still draining): the slow path runs every time.
        var unsettled = false
        /// Samples this subscriber found damaged and skipped.
        var corruptSamples = 0
        /// Samples lost to the overflow policy in blocks since recycled
        /// (their counters start again at 0 for the next publisher).
        var lostInRecycledBlocks: UInt64 = 0
        /// Entries in `inbound`.
        var inboundCount = 0
        /// Set when the `Subscriber` went while samples were borrowed: the
        /// port (and its registration, which keeps publishers from reusing
        /// those chunks) stays until the last one is dropped.
        var retiredPort: Unmanaged<SubscriberPort>?
    }

    let localBox: LocalBox<Local>
    var local: UnsafeMutablePointer<Local> { localBox.pointer }
    /// By block: the publisher connection using it, if attached.
    var connections: [InboundConnection?]
    /// The attached connections.
    var active: [InboundConnection] = [] { didSet { syncInbound() } }
    /// `active` as plain values for the receive loop: no reference counting.
    let inbound: UnsafeMutablePointer<InboundConnection.State>
    var registeredPublishers = Set<UInt64>()
    /// Why the last attempt to map a publisher's pool failed, if it failed
    /// for a reason other than "not there yet" (see `attach`).
    var attachFailure: ServiceError?

    /// A subscriber: creates its inbox, registers in the service, attaches.
    convenience init(attachment: ServiceAttachment, config: PublishSubscribeConfig, deliveryCapacity: Int, returnCapacity: Int,
                     elementStride: Int, minimumBytes: Int, waitStrategy: WaitStrategy) throws(ServiceError) {
        let id = UInt64.random(in: 1...UInt64.max)
        let inboxSegment = try SubscriberPort.createInbox(attachment: attachment, portID: id, blocks: config.maxPublishers,
                                                          deliveryCapacity: deliveryCapacity, returnCapacity: returnCapacity,
                                                          waitStrategy: waitStrategy)
        let registration: PortRegistration
        do {
            registration = try PortRegistration(layout: attachment.layout, table: .consumers, portID: id,
                                                nodeHash: attachment.node.hash, halves: 1)
        } catch {
            inboxSegment.unlinkIfStillLinked()
            throw error
        }
        try self.init(attachment: attachment, config: config, direction: .toConsumers, inboxSegment: inboxSegment,
                      registration: registration, elementStride: elementStride, minimumBytes: minimumBytes, waitStrategy: waitStrategy)
    }

    /// Creates the inbox of port `portID` (`svc.<service>.s<id>`, one block
    /// per slot of the senders' table): before the port registers, so that
    /// senders who see the registration can open it. `waitStrategy` says
    /// whether the receiver may sleep (senders then wake it).
    static func createInbox(attachment: ServiceAttachment, portID id: UInt64, blocks: Int, deliveryCapacity: Int,
                            returnCapacity: Int, waitStrategy: WaitStrategy) throws(ServiceError) -> SharedMemorySegment {
        try serviceCall {
            try SharedMemorySegment.create(attachment.name.portSegmentName(.inbox, id),
                                           size: SampleInbox.size(maxPublishers: blocks, deliveryCapacity: deliveryCapacity,
                                                                  returnCapacity: returnCapacity),
                                           kind: SampleInbox.kind, lifetime: .persistent) { data in
                try SampleInbox.initialize(data, maxPublishers: blocks, deliveryCapacity: deliveryCapacity,
                                           returnCapacity: returnCapacity, portID: id)
                let mayPark: Bool
                mayPark = !waitStrategy.neverParks
                try SampleInbox(data, expectedPortID: id).setMayPark(mayPark)
            }
        }
    }

    /// The receiving half of a registered port, over an inbox made by
    /// `createInbox`. On failure the inbox is unlinked and the registration left.
    init(attachment: ServiceAttachment, config: PublishSubscribeConfig, direction: PortDirection, inboxSegment: SharedMemorySegment,
         registration: PortRegistration, elementStride: Int, minimumBytes: Int, waitStrategy: WaitStrategy) throws(ServiceError) {
        self.attachment = attachment
        layout = attachment.layout
        serviceName = attachment.name.value
        serviceHash = ServiceLayout.hash(attachment.name.value)
        maxBorrowed = config.maxBorrowed
        producersDrop = config.overflow == .overwriteOldest
        publishersWait = config.overflow == .block
        self.elementStride = elementStride
        self.minimumBytes = minimumBytes
        strideMask = elementStride > 0 && elementStride & (elementStride - 1) == 0 ? elementStride - 1 : nil
        self.direction = direction
        self.registration = registration
        self.inboxSegment = inboxSegment
        let id = registration.portID
        do { inbox = try SampleInbox(inboxSegment.data, expectedPortID: id, service: attachment.name.value) }
        catch {
            registration.leave()
            inboxSegment.unlinkIfStillLinked()
            throw error
        }
        epoch = inbox.epoch
        localBox = LocalBox(Local())
        inbound = .allocate(capacity: inbox.maxPublishers)
        portID = id
        waiter = Waiter(waitStrategy)
        connections = Array(repeating: nil, count: inbox.maxPublishers)
        updateConnections()
    }

    deinit {
        for connection in active { connection.retire(detaching: false) }
        // Departed publishers whose pools may have waited for us (attached or
        // not: we may not have mapped all their segments).
        let awaited = inbox.owners
        registration.leave()
        inboxSegment.unlinkIfStillLinked()
        // Departed publishers' pools that waited for us may be unneeded now.
        for publisher in awaited { layout.removeDepartedPoolIfUnawaited(publisher, direction: direction) }
        inbound.deallocate()
    }

    /// Called when the `Subscriber` goes (see `Local.retiredPort`).
    func retire() {
        guard local.pointee.borrowed > 0, local.pointee.retiredPort == nil else { return }
        local.pointee.retiredPort = Unmanaged.passRetained(self)
    }

    func syncInbound() {
        let count = min(active.count, inbox.maxPublishers)
        for i in 0..<count { (inbound + i).initialize(to: active[i].state) }
        local.pointee.inboundCount = count
    }

    // MARK: Receiving

    /// A sample reference taken from a delivery queue, checked against its pool.
    @usableFromInline
    struct Delivery {
        @usableFromInline let connection: Unmanaged<InboundConnection>
        @usableFromInline let reference: UInt64
        @usableFromInline let address: UnsafeRawPointer
        @usableFromInline let header: UnsafeRawPointer
        @usableFromInline let bytes: Int
    }

    /// The next sample from any publisher, or nil if none is waiting.
    @usableFromInline @inline(__always)
    func tryReceive() throws(ServiceError) -> Delivery? {
        let state = local
        if state.pointee.unsettled || epoch.current() != state.pointee.knownEpoch
            || layout.version != state.pointee.knownVersion {
            updateConnections()
        }
        guard state.pointee.borrowed < maxBorrowed else { throw .tooManyBorrowed(maximum: maxBorrowed) }
        let count = state.pointee.inboundCount
        if count == 0 { return nil }
        var index = state.pointee.nextActive < count ? state.pointee.nextActive : 0
        for _ in 0..<count {
            let connection = inbound + index
            index = index + 1 == count ? 0 : index + 1
            let taken = producersDrop ? connection.pointee.delivery.pop() : connection.pointee.delivery.popExclusive()
            if let value = taken {
                if publishersWait { connection.pointee.spaceWakeup.afterMakingRoom() }
                state.pointee.nextActive = index
                return try delivery(from: value, connection: connection)
            }
        }
        return nil
    }

    @inline(__always)
    func delivery(from value: UInt64, connection: UnsafeMutablePointer<InboundConnection.State>) throws(ServiceError) -> Delivery {
        let c = connection.pointee
        let id = ChunkReference.id(value), bytes = ChunkReference.length(value)
        // The segment's view: 256 entries, so any segment byte indexes it;
        // an unmapped segment has no chunks.
        let view = c.views[ChunkReference.segment(ofID: id)]
        let chunk = ChunkReference.index(ofID: id)
        let whole = if let strideMask { bytes & strideMask == 0 } else { bytes % elementStride == 0 }
        guard chunk < view.count, bytes <= view.capacity, whole, bytes >= minimumBytes else {
            return try unusualDelivery(from: value, connection: connection)
        }
        local.pointee.borrowed += 1
        c.flags.pointee.outstanding += 1
        let header = view.chunks + chunk * view.stride
        let next = UnsafeRawPointer(header).load(fromByteOffset: ChunkPool.ChunkOffset.next, as: UInt32.self)
        let nextView = c.views[ChunkReference.segment(ofID: next)], nextChunk = ChunkReference.index(ofID: next)
        c.flags.pointee.predicted = nextChunk < nextView.count ? nextView.chunks + nextChunk * nextView.stride : nil
        return Delivery(connection: c.connection, reference: value,
                        address: UnsafeRawPointer(header + c.payloadOffset), header: UnsafeRawPointer(header), bytes: bytes)
    }

    /// A reference the fast path could not resolve: into a segment the
    /// publisher added since we last mapped (map it, then deliver), or
    /// damaged (hand it back if it names one of its chunks; skip it).
    @inline(never)
    func unusualDelivery(from value: UInt64, connection: UnsafeMutablePointer<InboundConnection.State>) throws(ServiceError) -> Delivery {
        let c = connection.pointee
        let id = ChunkReference.id(value), bytes = ChunkReference.length(value)
        let segment = ChunkReference.segment(ofID: id), chunk = ChunkReference.index(ofID: id)
        if c.views[segment].count == 0, segment < ChunkPool.maxSegments {
            mapNewSegments(of: c.connection.takeUnretainedValue())
            if chunk < c.views[segment].count { return try delivery(from: value, connection: connection) }
        }
        local.pointee.corruptSamples += 1
        // Hand it back, so the publisher's pool does not shrink by it (the
        // publisher takes back only IDs it gave us).
        if !c.flags.pointee.detached {
            _ = try? c.connection.takeUnretainedValue().returns.writer.pushToPoller(value)
        }
        if c.views[segment].count == 0, let attachFailure { throw attachFailure }
        throw .corrupt(service: serviceName,
                       reason: "publisher \(c.publisherID) sent chunk \(chunk) of segment \(segment) of \(bytes) bytes, outside its pool; skipped")
    }

    /// Waits for the next sample with the wait strategy, at most `timeout`.
    @usableFromInline
    func receive(timeout: Duration?) throws(ServiceError) -> Delivery {
        try receive(until: deadline(after: timeout), timeout: timeout)
    }

    /// Waits for the next sample with the wait strategy, at most until `end`.
    func receive(until end: UInt64?, timeout: Duration?) throws(ServiceError) -> Delivery {
        while true {
            if let delivery = try tryReceive() { return delivery }
            if !waitForSample(until: end) {
                // Samples may be waiting that we cannot map: say why, not "timed out".
                if let attachFailure { throw attachFailure }
                throw .timedOut(after: timeout)
            }
        }
    }

    /// Waits until a sample may be there, a publisher claimed or left a
    /// block of our inbox, or the port table changed.
    func waitForSample(until end: UInt64?) -> Bool {
        let inbound = self.inbound, count = local.pointee.inboundCount
        let layout = self.layout, version = local.pointee.knownVersion, epoch = self.epoch, seenEpoch = local.pointee.knownEpoch
        return waiter.wait(on: inbox.parker, deadline: end, slice: 50_000_000) {
            for i in 0..<count {
                let connection = inbound + i
                // Ask for the predicted chunk's line with every poll: when the
                // publisher writes it, its transfer overlaps the delivery
                // entry's instead of following it.
                if let line = connection.pointee.flags.pointee.predicted { CPU.prefetchForRead(line) }
                if connection.pointee.delivery.hasValue { return true }
            }
            return layout.version != version || epoch.currentBeforeSleeping() != seenEpoch
        } keepWaiting: { true }
    }

    /// True if a sample is waiting in a queue this subscriber is attached to.
    func hasSample() -> Bool { active.contains { $0.delivery.hasValue } }

    /// True if `tryReceive()` may find a sample, or the connections changed.
    func mayHaveSample() -> Bool {
        hasSample() || local.pointee.unsettled || layout.version != local.pointee.knownVersion
            || epoch.currentBeforeSleeping() != local.pointee.knownEpoch
    }

    var backlog: Int { active.reduce(0) { $0 + $1.delivery.count } }

    var lostSamples: UInt64 {
        (0..<inbox.maxPublishers).reduce(local.pointee.lostInRecycledBlocks) { $0 &+ inbox.lost(in: $1) }
    }

    // MARK: Connections

    /// Attaches to blocks that publishers claimed; recycles blocks whose
    /// publisher is gone once they are drained.
    func updateConnections() {
        // Loaded before the owners, so a later claim is noticed next time.
        local.pointee.knownEpoch = epoch.current()
        let version = layout.version
        if version != local.pointee.knownVersion { refreshPublishers(version) }
        var settled = true
        for block in 0..<inbox.maxPublishers {
            let owner = inbox.owner(of: block)
            if let connection = connections[block] {
                if connection.publisherID == owner {
                    if !registeredPublishers.contains(owner) {
                        // Its publisher left: recycle once drained (by the entry
                        // tags, not `tail`, which a killed publisher may not have
                        // stored). Borrowed samples keep the mapping through
                        // their retired connection.
                        if !connection.delivery.hasValue {
                            refreshPublishers(layout.version)
                            if !registeredPublishers.contains(owner) { recycle(block) }
                        } else {
                            settled = false
                        }
                    }
                    continue
                }
                detach(block)
            }
            guard owner != 0 else { continue }
            if !registeredPublishers.contains(owner) {
                // A publisher registers before it claims a block, so our
                // snapshot may simply be older than its claim: look again.
                refreshPublishers(layout.version)
                if !registeredPublishers.contains(owner) {
                    // Claimed by a publisher that has gone before we attached.
                    // Its pool may still be there (a killed publisher not yet
                    // reclaimed): then read what it queued; else let go.
                    if !inboxHasQueued(block) || !attach(block, publisherID: owner) { recycle(block) }
                    settled = false
                    continue
                }
            }
            // A pool we cannot map yet is tried again next time.
            if !attach(block, publisherID: owner) { settled = false }
        }
        local.pointee.unsettled = !settled
    }

    /// Publishers registered (and alive) in the service now.
    func refreshPublishers(_ version: UInt64) {
        local.pointee.knownVersion = version
        registeredPublishers = Set(layout.entries(direction.senders).filter { $0.owner.isAlive }.map(\.portID))
    }

    func inboxHasQueued(_ block: Int) -> Bool {
        (try? IndexQueue(attaching: inbox.deliveryRegion(block)))?.hasValue ?? false
    }

    /// Maps the pool of the publisher that claimed `block` and attaches to
    /// the block's queues; false if the pool cannot be mapped (yet).
    func attach(_ block: Int, publisherID: UInt64) -> Bool {
        guard let delivery = try? IndexQueue(attaching: inbox.deliveryRegion(block)),
              let returns = try? IndexQueue(attaching: inbox.returnRegion(block)),
              let producer = try? IndexQueue.Producer(returns) else {
            recycle(block)
            return true
        }
        let poolSegment: SharedMemorySegment
        let pool: ChunkPool
        do {
            poolSegment = try SharedMemorySegment.open(attachment.name.portSegmentName(.pool, publisherID),
                                                       access: .readOnly, kind: ChunkPool.kind, timeout: .milliseconds(100))
            pool = try ChunkPool(poolSegment.data, expectedPortID: publisherID, serviceHash: serviceHash, service: serviceName)
        } catch let error as SegmentError {
            // Not there yet, or still being created: try again later. Anything
            // else (no memory or address space for the mapping, no
            // permission, a damaged header) is what a receive that finds
            // nothing reports instead of timing out.
            switch error {
            case .notFound, .notReady: break
            default: attachFailure = .segment(error)
            }
            return false
        } catch let error as ServiceError {
            attachFailure = error
            return false
        } catch {
            attachFailure = .corrupt(service: serviceName, reason: "\(error)")
            return false
        }
        attachFailure = nil
        let connection = InboundConnection(block: block, publisherID: publisherID, pool: pool, poolSegment: poolSegment,
                                           inboxSegment: inboxSegment, delivery: delivery, spaceWakeup: inbox.spaceWakeup(of: block),
                                           returns: producer, local: localBox)
        connections[block] = connection
        active.append(connection)
        mapNewSegments(of: connection)
        return true
    }

    /// Maps the segments `connection`'s publisher added to its pool since we
    /// last looked (every one below the count in its segment 0), then says
    /// so in the block (`markAttached`): a departed publisher's pool keeps
    /// its names until every subscriber with references queued mapped all
    /// its segments. Slow path: on attaching, and on the first reference
    /// into a segment not mapped yet.
    func mapNewSegments(of connection: InboundConnection) {
        let count = connection.pool.segmentCount()
        mapping: for number in connection.mappedSegments..<max(connection.mappedSegments, count) {
            do {
                let segment = try SharedMemorySegment.open(attachment.name.poolSegmentName(connection.publisherID, segment: number),
                                                           access: .readOnly, kind: ChunkPool.kind, timeout: .milliseconds(100))
                let pool: ChunkPool
                do {
                    pool = try ChunkPool(segment.data, expectedPortID: connection.publisherID, serviceHash: serviceHash,
                                         segmentNumber: number)
                } catch { throw ServiceError.corrupt(service: serviceName, reason: error.layoutReason) }
                guard pool.payloadOffset == connection.pool.payloadOffset else {
                    throw ServiceError.corrupt(service: serviceName, reason: "pool segment \(number) places payloads elsewhere")
                }
                connection.add(segment: segment, pool: pool, number: number)
            } catch SegmentError.notFound {
                // Retired and unlinked by its publisher: nothing of it is queued.
            } catch {
                // Anything else (no memory or descriptors for the mapping, not
                // ready, a damaged header): stop here and try again with the
                // next reference into it; say so if a receive finds nothing.
                switch error {
                case let error as SegmentError: attachFailure = .segment(error)
                case let error as ServiceError: attachFailure = error
                default: attachFailure = .corrupt(service: serviceName, reason: "\(error)")
                }
                connection.mappedSegments = number
                break mapping
            }
            connection.mappedSegments = number + 1
        }
        // Then the fence in `removeDepartedPoolIfUnawaited` (Dekker with the
        // publisher's deinit): once it reads our ID and count here, it may
        // remove its pool's names.
        inbox.markAttached(connection.block, to: connection.publisherID, segments: connection.mappedSegments)
        if !registeredPublishers.contains(connection.publisherID) {
            layout.removeDepartedPoolIfUnawaited(connection.publisherID, direction: direction)
        }
    }

    func detach(_ block: Int) {
        guard let connection = connections[block] else { return }
        connection.retire(detaching: true)
        connections[block] = nil
        active.removeAll { $0 === connection }
    }

    /// Lays the block out afresh and frees it for the next publisher.
    func recycle(_ block: Int) {
        detach(block)
        let current = inbox.owner(of: block)
        guard current != 0 else { return }
        // Keep the count of what its publisher lost for us.
        local.pointee.lostInRecycledBlocks &+= inbox.lost(in: block)
        try? inbox.resetBlock(block)
        inbox.free(block, from: current)
        // A departed publisher's pool may have waited for this block only.
        layout.removeDepartedPoolIfUnawaited(current, direction: direction)
    }

    /// Test hook: takes every waiting sample reference and never gives it
    /// back, as a buggy or hostile subscriber would. Returns how many.
    func leakForTesting() -> Int {
        updateConnections()
        var leaked = 0
        for connection in active {
            while connection.delivery.pop() != nil { leaked += 1 } // (a CAS pop is valid for every queue)
        }
        return leaked
    }
}

/// A heap cell that stays as long as anyone references the box.
final class LocalBox<Value> {
    let pointer: UnsafeMutablePointer<Value>
    init(_ value: Value) {
        pointer = .allocate(capacity: 1)
        pointer.initialize(to: value)
    }
    deinit {
        pointer.deinitialize(count: 1)
        pointer.deallocate()
    }
}

/// A subscriber's connection to one publisher: its pool (mapped read-only)
/// and the block of our inbox it delivers into. A received sample holds its
/// connection, which keeps both mappings alive for as long as the sample.
@usableFromInline
final class InboundConnection {
    /// The hot-path view: plain values and pointers, plus an unretained
    /// reference to the connection (`active` holds it).
    struct State {
        let delivery: IndexQueue
        let spaceWakeup: SampleInbox.SpaceWakeup
        let connection: Unmanaged<InboundConnection>
        let flags: UnsafeMutablePointer<Flags>
        let publisherID: UInt64
        /// By segment number (256 entries): the publisher's pool segments we mapped.
        let views: UnsafeMutablePointer<SegmentView>
        /// Where the payload starts in a chunk (the same in every segment).
        let payloadOffset: Int
    }

    /// One mapped segment of the publisher's pool, as the receive path
    /// reads it (`count` 0: not mapped).
    struct SegmentView {
        var chunks: UnsafeRawPointer
        var count: Int
        var stride: Int
        var capacity: Int
    }

    let block: Int
    @usableFromInline let publisherID: UInt64
    let poolSegment: SharedMemorySegment
    let inboxSegment: SharedMemorySegment
    /// Segment 0 of the publisher's pool (its segment count lives there).
    let pool: ChunkPool
    /// The other segments we mapped (kept mapped while the connection lives).
    var segments: [SharedMemorySegment] = []
    /// Segments of the pool we have mapped or found retired (all below this).
    var mappedSegments = 1
    let views: UnsafeMutablePointer<SegmentView>
    let delivery: IndexQueue
    let spaceWakeup: SampleInbox.SpaceWakeup
    let returns: IndexQueue.Producer
    let local: LocalBox<SubscriberPort.Local>
    /// This process's bookkeeping for the connection (one thread at a time,
    /// like the subscriber).
    struct Flags {
        /// Set when the subscriber let go of the block (its publisher is
        /// gone): samples released afterwards are not handed back.
        var detached = false
        /// Samples received through this connection and not yet dropped.
        var outstanding = 0
        /// The subscriber let go of the connection while samples were
        /// outstanding: it keeps itself alive until the last one is dropped.
        var retired = false
        /// The first line of the chunk the publisher said it would loan
        /// next (`ChunkPool.ChunkOffset.next`): a waiting receive fetches it while
        /// polling the delivery queue, so the sample's line arrives with
        /// the reference instead of after it.
        var predicted: UnsafeRawPointer?
    }

    let flags: UnsafeMutablePointer<Flags>

    init(block: Int, publisherID: UInt64, pool: ChunkPool, poolSegment: SharedMemorySegment,
         inboxSegment: SharedMemorySegment, delivery: IndexQueue, spaceWakeup: SampleInbox.SpaceWakeup,
         returns: IndexQueue.Producer, local: LocalBox<SubscriberPort.Local>) {
        self.block = block
        self.publisherID = publisherID
        self.poolSegment = poolSegment
        self.inboxSegment = inboxSegment
        self.pool = pool
        self.delivery = delivery
        self.spaceWakeup = spaceWakeup
        self.returns = returns
        self.local = local
        flags = .allocate(capacity: 1)
        flags.initialize(to: Flags())
        views = .allocate(capacity: 256)
        views.initialize(repeating: SegmentView(chunks: UnsafeRawPointer(pool.chunk(0)), count: 0, stride: 0, capacity: 0), count: 256)
        views[0] = SegmentView(chunks: UnsafeRawPointer(pool.chunk(0)), count: pool.chunkCount, stride: pool.chunkStride,
                               capacity: pool.payloadCapacity)
    }

    deinit {
        flags.deallocate()
        views.deallocate()
    }

    /// A segment the publisher added, mapped: the receive path resolves
    /// references into it from now on.
    func add(segment: SharedMemorySegment, pool: ChunkPool, number: Int) {
        segments.append(segment)
        views[number] = SegmentView(chunks: UnsafeRawPointer(pool.chunk(0)), count: pool.chunkCount, stride: pool.chunkStride,
                                    capacity: pool.payloadCapacity)
    }

    /// Called when the subscriber lets go of the connection. Samples refer
    /// to it without reference counting (an atomic increment and decrement
    /// per sample otherwise); while any is outstanding the connection
    /// retains itself, and the last one dropped releases it.
    func retire(detaching: Bool) {
        if detaching { flags.pointee.detached = true }
        guard flags.pointee.outstanding > 0, !flags.pointee.retired else { return }
        flags.pointee.retired = true
        _ = Unmanaged.passRetained(self)
    }

    var state: State {
        State(delivery: delivery, spaceWakeup: spaceWakeup, connection: Unmanaged.passUnretained(self), flags: flags, publisherID: publisherID,
              views: views, payloadOffset: pool.payloadOffset)
    }

    /// What the caller of `giveBack` must release afterwards.
    @usableFromInline
    struct Released {
        /// The last sample of a retired connection went.
        @usableFromInline var connection: Bool
        /// The last borrowed sample of a retired subscriber went.
        @usableFromInline var port: Unmanaged<SubscriberPort>?
    }

    /// Called when a sample received through this connection is dropped.
    @usableFromInline @inline(__always)
    func giveBack(_ reference: UInt64) -> Released {
        let l = local.pointer
        l.pointee.borrowed -= 1
        let f = flags
        f.pointee.outstanding -= 1
        if !f.pointee.detached {
            _ = try? returns.writer.pushToPoller(reference)
        }
        var released = Released(connection: f.pointee.retired && f.pointee.outstanding == 0, port: nil)
        if l.pointee.borrowed == 0, let port = l.pointee.retiredPort {
            l.pointee.retiredPort = nil
            released.port = port
        }
        return released
    }
}
