import ShmSystem
import ShmPrimitives
#if canImport(Glibc)
import Glibc
#endif

/// Receives samples from every publisher of a service, in place.
///
/// ```swift
/// while let sample = try subscriber.tryReceive() { use(sample.payload) }   // dropped → handed back
/// let next = try subscriber.receive(timeout: .seconds(1))
/// ```
///
/// Use a subscriber from one thread at a time.
public final class Subscriber<Payload: BitwiseCopyable>: @unchecked Sendable {
    public let service: PublishSubscribeService<Payload>
    public let portID: UInt64
    let slotIndex: Int
    let inboxSegment: SharedMemorySegment
    let inbox: SubscriberInbox
    var waiter: Waiter

    /// One block of the inbox, as this subscriber currently uses it.
    final class PublisherConnection {
        let publisherID: UInt64
        let generation: UInt64
        let pool: PublisherPool
        let poolSegment: SharedMemorySegment
        let delivery: IndexQueue
        let returns: IndexQueue.Producer

        init(publisherID: UInt64, generation: UInt64, pool: PublisherPool, poolSegment: SharedMemorySegment,
             delivery: IndexQueue, returns: IndexQueue.Producer) {
            self.publisherID = publisherID
            self.generation = generation
            self.pool = pool
            self.poolSegment = poolSegment
            self.delivery = delivery
            self.returns = returns
        }
    }

    var connections: [PublisherConnection?]
    var knownVersion: UInt64 = .max
    var registeredPublishers = Set<UInt64>()
    var generation: UInt64 = 0
    var borrowed = 0
    var nextBlock = 0
    /// Samples this subscriber found damaged and skipped.
    public private(set) var corruptSamples = 0

    init(service: PublishSubscribeService<Payload>, waitStrategy: WaitStrategy) throws(ServiceError) {
        self.service = service
        let id = UInt64.random(in: 1...UInt64.max)
        let maxPublishers = service.config.maxPublishers
        let delivery = service.deliveryCapacity, returns = service.returnCapacity
        inboxSegment = try serviceCall {
            try SharedMemorySegment.create(service.attachment.name.portSegmentName("s", id),
                                           size: SubscriberInbox.size(maxPublishers: maxPublishers, deliveryCapacity: delivery,
                                                                      returnCapacity: returns),
                                           kind: SubscriberInbox.kind, lifetime: .persistent) { data in
                try SubscriberInbox.initialize(data, maxPublishers: maxPublishers, deliveryCapacity: delivery,
                                               returnCapacity: returns, portID: id)
            }
        }
        inbox = try SubscriberInbox(inboxSegment.data, expectedPortID: id, service: service.name)
        if case .busySpin = waitStrategy {
            inbox.mayPark.pointee.store(0, ordering: .sequentiallyConsistent)
        } else {
            inbox.mayPark.pointee.store(1, ordering: .sequentiallyConsistent)
        }
        portID = id
        waiter = Waiter(waitStrategy)
        connections = Array(repeating: nil, count: maxPublishers)
        do {
            slotIndex = try service.layout.register(.b, portID: id, nodeHash: service.attachment.node.hash) { _ in }
        } catch {
            inboxSegment.unlinkIfStillLinked()
            throw error
        }
        updateConnections()
    }

    deinit {
        service.layout.unregister(.b, index: slotIndex, portID: portID)
        inboxSegment.unlinkIfStillLinked()
    }

    // MARK: Receiving

    /// The next sample from any publisher, or nil if none is waiting.
    ///
    /// Never waits. - Throws: `.tooManyBorrowed` if this subscriber already holds
    ///   `maxBorrowed` samples; `.corrupt` for a reference that points
    ///   outside its publisher's pool (that sample is skipped).
    public func tryReceive() throws(ServiceError) -> ReceivedSample<Payload>? {
        updateConnections()
        guard borrowed < service.config.maxBorrowed else { throw .tooManyBorrowed(maximum: service.config.maxBorrowed) }
        let count = connections.count
        for step in 0..<count {
            let block = (nextBlock + step) % count
            guard let connection = connections[block], let value = connection.delivery.pop() else { continue }
            nextBlock = (block + 1) % count
            return try sample(from: value, block: block, connection: connection)
        }
        return nil
    }

    /// Waits for the next sample with the wait strategy, at most `timeout`.
    public func receive(timeout: Duration?) throws(ServiceError) -> ReceivedSample<Payload> {
        let end = deadline(after: timeout)
        while true {
            if let sample = try tryReceive() { return sample }
            if !waitForSample(until: end) { throw .timedOut(timeout) }
        }
    }

    /// Waits until a sample may be there, a publisher claimed or left a
    /// block of our inbox, or the port table changed.
    func waitForSample(until end: UInt64?) -> Bool {
        let queues = connections.compactMap { $0?.delivery }
        let layout = service.layout, version = knownVersion, inbox = self.inbox
        let owners = (0..<inbox.maxPublishers).map { inbox.owner($0).pointee.load(ordering: .acquiring) }
        return waiter.wait(on: inbox.parker, deadline: end, slice: 50_000_000) {
            queues.contains { $0.hasValue } || layout.version != version
                || (0..<owners.count).contains { inbox.owner($0).pointee.load(ordering: .sequentiallyConsistent) != owners[$0] }
        } keepWaiting: { true }
    }

    func sample(from value: UInt64, block: Int, connection: PublisherConnection) throws(ServiceError) -> ReceivedSample<Payload> {
        let chunk = ChunkReference.index(value), bytes = ChunkReference.length(value)
        let pool = connection.pool
        guard chunk < pool.chunkCount, bytes <= pool.payloadCapacity,
              bytes % MemoryLayout<Payload>.stride == 0, bytes >= (service.maxSliceLength == 1 ? MemoryLayout<Payload>.size : 0) else {
            corruptSamples += 1
            throw .corrupt(service: service.name, reason: "publisher \(connection.publisherID) sent chunk \(chunk) of \(bytes) bytes, outside its pool; skipped")
        }
        borrowed += 1
        let sequence = pool.chunk(chunk).load(as: UInt64.self)
        return ReceivedSample(subscriber: self, block: block, generation: connection.generation, reference: value,
                              address: UnsafeRawPointer(pool.payload(chunk)), count: bytes / MemoryLayout<Payload>.stride,
                              sequence: sequence, publisherID: connection.publisherID)
    }

    /// Called when a received sample is dropped.
    func giveBack(block: Int, generation: UInt64, reference: UInt64) {
        borrowed -= 1
        // The block may have been recycled for another publisher meanwhile:
        // then the sample's publisher is gone and nobody wants it back.
        guard let connection = connections[block], connection.generation == generation else { return }
        _ = try? connection.returns.push(reference, overwrite: false, sequentiallyConsistent: false)
    }

    /// Samples received and not yet dropped.
    public var borrowedSamples: Int { borrowed }

    /// Samples waiting in this subscriber's queues.
    public var backlog: Int { connections.reduce(0) { $0 + ($1?.delivery.count ?? 0) } }

    /// Samples the overflow policy dropped before this subscriber saw them.
    public var lostSamples: UInt64 {
        (0..<inbox.maxPublishers).reduce(0) { $0 &+ inbox.lost($1).pointee.load(ordering: .relaxed) }
    }

    // MARK: Connections

    /// Attaches to blocks that publishers claimed; recycles blocks whose
    /// publisher is gone once they are drained.
    func updateConnections() {
        let version = service.layout.version
        if version != knownVersion { refreshPublishers(version) }
        for block in 0..<inbox.maxPublishers {
            // SYNC POINT: acquire pairs with the publisher's CAS claiming the block.
            let owner = inbox.owner(block).pointee.load(ordering: .acquiring)
            if let connection = connections[block] {
                if connection.publisherID == owner {
                    if !registeredPublishers.contains(owner) && connection.delivery.count == 0 && borrowedFrom(block) == 0 {
                        refreshPublishers(service.layout.version)
                        if !registeredPublishers.contains(owner) { recycle(block) }
                    }
                    continue
                }
                connections[block] = nil
            }
            guard owner != 0 else { continue }
            if !registeredPublishers.contains(owner) {
                // A publisher registers before it claims a block, so our
                // snapshot may simply be older than its claim: look again.
                refreshPublishers(service.layout.version)
                if !registeredPublishers.contains(owner) {
                    // Claimed by a publisher that has gone before we attached.
                    // Its pool may still be there (a killed publisher not yet
                    // reclaimed): then read what it queued; else let go.
                    if !inboxHasQueued(block) || !attach(block, publisherID: owner) { recycle(block) }
                    continue
                }
            }
            // A pool we cannot map yet is tried again next time.
            _ = attach(block, publisherID: owner)
        }
    }

    func inboxHasQueued(_ block: Int) -> Bool {
        (try? IndexQueue(attaching: inbox.deliveryRegion(block)))?.hasValue ?? false
    }

    /// Publishers registered (and alive) in the service now.
    func refreshPublishers(_ version: UInt64) {
        knownVersion = version
        registeredPublishers = Set(service.layout.entries(.a).filter { $0.owner.isAlive }.map(\.portID))
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
        guard let poolSegment = try? SharedMemorySegment.open(service.attachment.name.portSegmentName("p", publisherID),
                                                              access: .readOnly, kind: PublisherPool.kind, timeout: .milliseconds(100)),
              let pool = try? PublisherPool(poolSegment.data, expectedPortID: publisherID, serviceHash: service.serviceHash,
                                            service: service.name) else { return false }
        generation &+= 1
        connections[block] = PublisherConnection(publisherID: publisherID, generation: generation, pool: pool,
                                                 poolSegment: poolSegment, delivery: delivery, returns: producer)
        // SYNC POINT: release pairs with the acquire load in the publisher's
        // linger: once it reads its ID here, our mapping of its pool exists.
        inbox.attached(block).pointee.store(publisherID, ordering: .releasing)
        return true
    }

    /// Lays the block out afresh and frees it for the next publisher.
    func recycle(_ block: Int) {
        connections[block] = nil
        let owner = inbox.owner(block)
        let current = owner.pointee.load(ordering: .acquiring)
        guard current != 0 else { return }
        try? inbox.resetBlock(block)
        // SYNC POINT: release pairs with the publisher's CAS claiming the block.
        _ = owner.pointee.compareExchange(expected: current, desired: 0, ordering: .acquiringAndReleasing)
    }

    /// Whether samples from the connection in `block` may still be borrowed.
    /// Conservative: any borrowed sample holds recycling back (recycling is
    /// rare and waits only until the application drops its samples).
    func borrowedFrom(_ block: Int) -> Int { borrowed > 0 ? 1 : 0 }

    /// Test hook: takes every waiting sample reference and never gives it
    /// back, as a buggy or hostile subscriber would. Returns how many.
    package func leakForTesting() -> Int {
        updateConnections()
        var leaked = 0
        for connection in connections.compactMap({ $0 }) {
            while connection.delivery.pop() != nil { leaked += 1 }
        }
        return leaked
    }

    /// Publishers this subscriber receives from now.
    public var connectedPublishers: Int { connections.compactMap { $0 }.count }
}
