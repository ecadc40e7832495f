import ShmSystem
@_spi(ShmInternals) import ShmPrimitives

/// What a publisher leaves behind when it is dropped.
///
/// A sample that `send` counted as delivered must reach its subscriber even
/// if the publisher goes right after: in an optimized build a `Publisher`
/// is released after its last use, not at the end of its scope, so "send,
/// then drop" is the ordinary shape of a program, and in one process the
/// subscriber cannot even run until the drop is over. The samples stay in
/// the pool's memory for as long as someone maps it; what must not go too
/// early is the pool's *name*, which a subscriber needs to map it.
///
/// The rule: a departed publisher's pool keeps its names while some inbox
/// block it claimed is *awaiting* — it still has references queued and its
/// subscriber has not mapped the pool (`attached` does not name it), or
/// its subscriber has mapped fewer segments of a pool that grew than the
/// pool has (`attachedSegments`), queued or not: it may hold a reference it
/// popped into a segment it is about to map.
/// Whoever changes that last (the publisher as it leaves, a subscriber as it
/// attaches, recycles a block or goes) checks, and the one that finds
/// nothing awaiting unlinks the name. `shm cleanup` keeps awaited pools.
///
/// SYNC POINT (Dekker): the publisher unregisters, fences (seq_cst), then
/// reads `attached` and `attachedSegments` (`SampleInbox.awaits`); a
/// subscriber stores them (`markAttached`, after mapping, or frees its
/// block), fences (seq_cst), then reads the
/// port table. One of the two sees the other, so an awaited pool is never
/// unlinked and the last party always sees that nothing is awaited.
extension ServiceLayout {
    /// Unlinks the pool of `publisherID` if its publisher has left and no
    /// subscriber's inbox awaits it (see above). Slow path: maps each
    /// subscriber's inbox, and only when the pool's name still exists.
    /// `direction` says which table the sender and its receivers are in.
    func removeDepartedPoolIfUnawaited(_ publisherID: UInt64, direction: PortDirection = .toConsumers) {
        // Dekker with the departing publisher (`PublisherPort.deinit`).
        SampleInbox.fenceAfterAttaching()
        guard let poolName = try? SegmentName(name.portSegmentName(.pool, publisherID)),
              SharedMemorySegment.exists(poolName),
              !entries(direction.senders).contains(where: { $0.portID == publisherID }) else { return }
        let segments = poolSegmentCount(publisherID)
        var awaited = false
        forEachReceiverInbox(direction) { inbox in
            awaited = awaited || (0..<inbox.maxPublishers).contains { inbox.awaits(publisherID, block: $0, segments: segments) }
        }
        guard !awaited else { return }
        // Every segment of the pool, segment 0 (which holds the count) last.
        for segment in name.existingPoolSegments(publisherID).reversed() { try? SharedMemorySegment.unlink(segment.name) }
    }

    /// The segment count of a pool (from its segment 0); `Int.max` if that
    /// cannot be read, so that every attached subscriber counts as waiting
    /// (keeping names a little longer, never dropping one too early).
    func poolSegmentCount(_ publisherID: UInt64) -> Int {
        guard let segment = try? SharedMemorySegment.open(name.portSegmentName(.pool, publisherID), access: .readOnly,
                                                          kind: ChunkPool.kind, timeout: .milliseconds(50)),
              let pool = try? ChunkPool(segment.data, expectedPortID: publisherID, serviceHash: ServiceLayout.hash(name.value))
        else { return .max }
        return withExtendedLifetime(segment) { pool.segmentCount() }
    }

    /// Pools that some live subscriber's inbox awaits (for `shm cleanup`).
    func awaitedPools() -> Set<String> {
        var names = Set<String>()
        for direction in directions {
            forEachReceiverInbox(direction) { inbox in
                for publisher in inbox.awaitedPublishers(segments: poolSegmentCount) {
                    names.insert(name.portSegmentName(.pool, publisher))
                }
            }
        }
        return names
    }

    /// The directions in which this service's ports send through pools.
    var directions: [PortDirection] {
        switch config.pattern {
        case .publishSubscribe: [.toConsumers]
        case .requestResponse: [.toConsumers, .toProducers]
        case .event: []
        }
    }

    /// Block indexes that some subscriber's inbox has owned (by a live
    /// publisher, or a departed one whose block is not recycled yet).
    func blocksInUse(_ direction: PortDirection = .toConsumers) -> Set<Int> {
        var used = Set<Int>()
        forEachReceiverInbox(direction) { inbox in
            for block in 0..<inbox.maxPublishers where inbox.owner(of: block) != 0 {
                used.insert(block)
            }
        }
        return used
    }

    /// Maps each registered receiver's inbox in turn (those that cannot be
    /// mapped or are damaged are passed over).
    private func forEachReceiverInbox(_ direction: PortDirection, _ body: (SampleInbox) -> Void) {
        for subscriber in entries(direction.receivers) {
            guard let segment = try? SharedMemorySegment.open(name.portSegmentName(.inbox, subscriber.portID),
                                                              kind: SampleInbox.kind, timeout: .milliseconds(50)),
                  let inbox = try? SampleInbox(segment.data, expectedPortID: subscriber.portID, service: name.value)
            else { continue }
            withExtendedLifetime(segment) { body(inbox) }
        }
    }
}
