import ShmSystem
import ShmPrimitives
#if canImport(Glibc)
import Glibc
#endif

/// Sends samples on a publish/subscribe service without copying them.
///
/// ```swift
/// let sample = try publisher.loanUninitialized().write(Reading(t: now, x: 1.5))
/// try sample.send()
/// ```
///
/// Use a publisher from one thread at a time.
public final class Publisher<Payload: BitwiseCopyable>: @unchecked Sendable {
    public let service: PublishSubscribeService<Payload>
    /// This port's identifier in the service.
    public let portID: UInt64
    let slotIndex: Int
    let poolSegment: SharedMemorySegment
    let pool: PublisherPool

    /// How long a send waits for room under the `.block` overflow policy.
    public var sendTimeout: Duration = .seconds(1)

    /// Chunks nobody holds.
    var freeChunks: [Int32]
    /// Per chunk: subscribers holding it (queued or borrowed) + 1 if in the history.
    var holders: [UInt32]
    var loanedCount = 0
    var history: [Int] = []
    var sequence: UInt64 = 0
    var connections: [UInt64: SubscriberConnection] = [:]
    var knownVersion: UInt64 = .max
    var sendsSinceSweep = 0

    /// A connection to one subscriber's inbox block.
    final class SubscriberConnection {
        let portID: UInt64
        let segment: SharedMemorySegment
        let inbox: SubscriberInbox
        var delivery: IndexQueue.Producer?
        var returns: IndexQueue?
        /// Per chunk: how many references this subscriber holds.
        var outstanding: [UInt16]

        init(portID: UInt64, segment: SharedMemorySegment, inbox: SubscriberInbox, chunks: Int) {
            self.portID = portID
            self.segment = segment
            self.inbox = inbox
            outstanding = [UInt16](repeating: 0, count: chunks)
        }
    }

    init(service: PublishSubscribeService<Payload>) throws(ServiceError) {
        self.service = service
        let id = UInt64.random(in: 1...UInt64.max)
        let config = service.config
        let chunks = config.chunksPerPublisher
        let capacity = service.payloadType.size
        let alignment = service.payloadType.alignment
        let hash = service.serviceHash
        // The pool exists before the port is registered, so subscribers that
        // see the registration can always map it.
        poolSegment = try serviceCall {
            try SharedMemorySegment.create(service.attachment.name.portSegmentName("p", id),
                                           size: PublisherPool.size(chunkCount: chunks, payloadCapacity: capacity, alignment: alignment),
                                           mode: 0o600, kind: PublisherPool.kind, lifetime: .persistent) { data in
                PublisherPool.initialize(data, chunkCount: chunks, payloadCapacity: capacity, alignment: alignment,
                                         portID: id, serviceHash: hash)
            }
        }
        pool = try PublisherPool(poolSegment.data, expectedPortID: id, serviceHash: hash, service: service.name)
        portID = id
        freeChunks = (0..<Int32(chunks)).reversed()
        holders = [UInt32](repeating: 0, count: chunks)
        do {
            slotIndex = try service.layout.register(.a, portID: id, nodeHash: service.attachment.node.hash) { _ in }
        } catch {
            poolSegment.unlinkIfStillLinked()
            throw error
        }
        try updateConnections(force: true)
    }

    /// How long dropping this publisher waits for subscribers that have
    /// samples from it queued but have not mapped its pool yet (asleep, or
    /// not scheduled). Once its name is gone a subscriber cannot map the
    /// pool, and those samples are lost to it. Zero: do not wait.
    public var lingerTimeout: Duration = .milliseconds(250)

    deinit {
        linger()
        service.layout.unregister(.a, index: slotIndex, portID: portID)
        // Subscribers keep their mappings of the pool; the name goes now.
        poolSegment.unlinkIfStillLinked()
        for connection in connections.values {
            // Leave the block to its subscriber, which recycles it once drained.
            connection.inbox.parker.wake(count: 1)
        }
    }

    /// Waits until every subscriber with samples queued from us has mapped
    /// our pool, or `lingerTimeout` passed.
    func linger() {
        let waiting = connections.values.filter { ($0.delivery?.queue.count ?? 0) > 0 }
        guard !waiting.isEmpty, lingerTimeout > .zero else { return }
        let end = monotonicNanoseconds() &+ lingerTimeout.nanoseconds
        var pause: UInt32 = 20
        while true {
            // SYNC POINT: acquire pairs with the subscriber's release store of
            // `attached` after it mapped our pool.
            let pending = waiting.filter { $0.inbox.attached(slotIndex).pointee.load(ordering: .acquiring) != portID }
            if pending.isEmpty || monotonicNanoseconds() >= end { return }
            for connection in pending { connection.inbox.parker.wake(count: 1) }
            usleep(pause)
            pause = min(pause * 2, 5000)
        }
    }

    // MARK: Loaning

    /// Loans an uninitialized sample for one `Payload` value.
    public func loanUninitialized() throws(ServiceError) -> UninitializedSample<Payload> {
        let chunk = try takeChunk()
        return UninitializedSample(publisher: self, chunk: chunk, count: 1)
    }

    /// Loans an uninitialized sample for `count` elements (slice services).
    public func loanUninitialized(count: Int) throws(ServiceError) -> UninitializedSample<Payload> {
        guard count >= 0, count <= service.maxSliceLength else {
            throw .payloadTooLarge(size: count * MemoryLayout<Payload>.stride, maximum: service.payloadType.size)
        }
        let chunk = try takeChunk()
        return UninitializedSample(publisher: self, chunk: chunk, count: count)
    }

    /// Copies `value` into a loaned sample and sends it; returns how many
    /// subscribers it reached.
    @discardableResult
    public func send(copyOf value: Payload) throws(ServiceError) -> Int {
        try loanUninitialized().write(value).send()
    }

    /// Copies `elements` into a loaned slice sample and sends it.
    @discardableResult
    public func send(copyOf elements: some Collection<Payload>) throws(ServiceError) -> Int {
        let sample = try loanUninitialized(count: elements.count)
        let buffer = sample.unsafeBuffer
        _ = buffer.initialize(from: elements)
        return try sample.assumeInitialized().send()
    }

    /// Samples loaned and not yet sent or dropped.
    public var loanedSamples: Int { loanedCount }

    func takeChunk() throws(ServiceError) -> Int {
        guard loanedCount < service.config.maxLoans else { throw .tooManyLoans(maximum: service.config.maxLoans) }
        try updateConnections(force: false)
        reclaimReturns()
        if freeChunks.isEmpty {
            // Subscribers that died holding samples are the usual reason.
            sweepDeadSubscribers()
            reclaimReturns()
        }
        guard let chunk = freeChunks.popLast() else {
            throw .poolExhausted(service: service.name, chunks: holders.count)
        }
        loanedCount += 1
        return Int(chunk)
    }

    func returnLoan(_ chunk: Int) {
        loanedCount -= 1
        if holders[chunk] == 0 { freeChunks.append(Int32(chunk)) }
    }

    // MARK: Sending

    /// Delivers a written chunk to every connected subscriber.
    func deliver(chunk: Int, bytes: Int) throws(ServiceError) -> Int {
        loanedCount -= 1
        sequence &+= 1
        let header = pool.chunk(chunk)
        header.storeBytes(of: sequence, as: UInt64.self)
        header.storeBytes(of: UInt64(bytes), toByteOffset: 8, as: UInt64.self)
        try updateConnections(force: false)
        reclaimReturns()
        let value = ChunkReference.encode(index: chunk, length: bytes)
        var reached = 0
        // Hold the chunk ourselves while delivering: a fast subscriber may
        // hand it back before we have pushed it to the others.
        holders[chunk] += 1
        defer { release(chunk) }
        for connection in connections.values where connection.delivery != nil {
            if try push(value, chunk: chunk, to: connection) { reached += 1 }
        }
        if service.config.historySize > 0 {
            holders[chunk] += 1
            history.append(chunk)
            if history.count > service.config.historySize { release(history.removeFirst()) }
        }
        sendsSinceSweep += 1
        if sendsSinceSweep >= 4096 { sweepDeadSubscribers() }
        return reached
    }

    /// Pushes one reference into a subscriber's queue under the overflow policy.
    func push(_ value: UInt64, chunk: Int, to connection: SubscriberConnection) throws(ServiceError) -> Bool {
        guard let delivery = connection.delivery else { return false }
        let block = slotIndex
        let mayPark = connection.inbox.mayPark.pointee.load(ordering: .relaxed) != 0
        var deadline: UInt64?
        while true {
            let outcome: IndexQueue.Producer.Outcome
            do {
                outcome = try delivery.push(value, overwrite: service.config.overflow == .overwriteOldest,
                                            sequentiallyConsistent: mayPark)
            } catch {
                // The subscriber's queue is damaged: stop delivering to it.
                disconnect(connection)
                throw .corrupt(service: service.name, reason: "subscriber \(connection.portID): \(error)")
            }
            switch outcome {
            case .pushed, .pushedDropping:
                if case .pushedDropping(let dropped) = outcome {
                    connection.inbox.lost(block).pointee.wrappingAdd(1, ordering: .relaxed)
                    unhold(ChunkReference.index(dropped), by: connection)
                }
                connection.outstanding[chunk] += 1
                holders[chunk] += 1
                connection.inbox.delivered(block).pointee.wrappingAdd(1, ordering: .relaxed)
                if mayPark { connection.inbox.parker.wakeIfSleeping() }
                return true
            case .full:
                if service.config.overflow == .discard {
                    connection.inbox.lost(block).pointee.wrappingAdd(1, ordering: .relaxed)
                    return false
                }
                // .block: wait (bounded) for the subscriber to make room.
                let now = monotonicNanoseconds()
                if deadline == nil { deadline = now + sendTimeout.nanoseconds }
                if now >= deadline! {
                    connection.inbox.lost(block).pointee.wrappingAdd(1, ordering: .relaxed)
                    return false
                }
                if mayPark { connection.inbox.parker.wakeIfSleeping() }
                reclaimReturns()
                usleep(20)
            }
        }
    }

    // MARK: Pool bookkeeping

    /// Takes back what subscribers released.
    func reclaimReturns() {
        for connection in connections.values {
            guard let returns = connection.returns else { continue }
            while let value = returns.pop() {
                let chunk = ChunkReference.index(value)
                // Never trust a returned index: it must be one we gave this subscriber.
                guard chunk < holders.count, connection.outstanding[chunk] > 0 else { continue }
                unhold(chunk, by: connection)
            }
        }
    }

    func unhold(_ chunk: Int, by connection: SubscriberConnection) {
        guard chunk < holders.count, connection.outstanding[chunk] > 0 else { return }
        connection.outstanding[chunk] -= 1
        release(chunk)
    }

    func release(_ chunk: Int) {
        guard holders[chunk] > 0 else { return }
        holders[chunk] -= 1
        if holders[chunk] == 0 { freeChunks.append(Int32(chunk)) }
    }

    // MARK: Connections

    /// Connects to new subscribers and drops departed ones when the service's
    /// port table changed.
    func updateConnections(force: Bool) throws(ServiceError) {
        let version = service.layout.version
        if !force && version == knownVersion {
            // Still retry blocks we could not claim yet (their previous publisher's leftovers).
            if connections.values.contains(where: { $0.delivery == nil }) { claimPendingBlocks() }
            return
        }
        knownVersion = version
        let subscribers = service.layout.entries(.b)
        let current = Set(subscribers.map(\.portID))
        for (id, connection) in connections where !current.contains(id) { disconnect(connection) }
        for entry in subscribers where connections[entry.portID] == nil {
            guard let segment = try? SharedMemorySegment.open(service.attachment.name.portSegmentName("s", entry.portID),
                                                              kind: SubscriberInbox.kind, timeout: .milliseconds(100)),
                  let inbox = try? SubscriberInbox(segment.data, expectedPortID: entry.portID, service: service.name),
                  slotIndex < inbox.maxPublishers else { continue }
            connections[entry.portID] = SubscriberConnection(portID: entry.portID, segment: segment, inbox: inbox,
                                                             chunks: holders.count)
        }
        claimPendingBlocks()
    }

    /// Claims our block in each subscriber's inbox once it is free.
    func claimPendingBlocks() {
        for connection in connections.values where connection.delivery == nil {
            let owner = connection.inbox.owner(slotIndex)
            let claimed = owner.pointee.compareExchange(expected: 0, desired: portID, ordering: .acquiringAndReleasing)
            guard claimed.exchanged || claimed.original == portID,
                  let delivery = try? IndexQueue(attaching: connection.inbox.deliveryRegion(slotIndex)),
                  let producer = try? IndexQueue.Producer(delivery),
                  let returns = try? IndexQueue(attaching: connection.inbox.returnRegion(slotIndex)) else { continue }
            connection.delivery = producer
            connection.returns = returns
            // Late joiner: replay the history, oldest first.
            for chunk in history {
                let bytes = Int(pool.chunk(chunk).load(fromByteOffset: 8, as: UInt64.self))
                _ = try? push(ChunkReference.encode(index: chunk, length: bytes), chunk: chunk, to: connection)
            }
            connection.inbox.parker.wake(count: 1)
        }
    }

    /// Forgets a subscriber and takes back every sample it held.
    func disconnect(_ connection: SubscriberConnection) {
        for chunk in connection.outstanding.indices {
            while connection.outstanding[chunk] > 0 { unhold(chunk, by: connection) }
        }
        connections[connection.portID] = nil
    }

    /// Reclaims the service slots of dead subscribers (which bumps the
    /// service version, so the next update disconnects them).
    func sweepDeadSubscribers() {
        sendsSinceSweep = 0
        let deadSubscribers = connections.keys.filter { id in
            !service.layout.entries(.b).contains { $0.portID == id && $0.owner.isAlive }
        }
        guard !deadSubscribers.isEmpty else { return }
        service.reclaimDeadPorts()
        for id in deadSubscribers { if let connection = connections[id] { disconnect(connection) } }
    }

    /// Subscribers this publisher delivers to now (as of the last send or
    /// `waitForSubscribers`; new ones are taken in lazily).
    public var connectedSubscribers: Int { connections.values.filter { $0.delivery != nil }.count }

    /// Waits until at least `count` subscribers are connected, polling the
    /// service's port table every millisecond. Returns false on timeout.
    /// Useful before a first send when a late joiner must not depend on
    /// history.
    public func waitForSubscribers(_ count: Int, timeout: Duration) throws(ServiceError) -> Bool {
        let end = monotonicNanoseconds() &+ timeout.nanoseconds
        while true {
            try updateConnections(force: false)
            if connectedSubscribers >= count { return true }
            if monotonicNanoseconds() >= end { return false }
            usleep(1000)
        }
    }
}
