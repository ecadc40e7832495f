import Synchronization
import ShmSystem
import ShmPrimitives

/// A publisher's sample pool: segment `svc.<service>.p<portID>`, mapped
/// read-write by its publisher and read-only by subscribers.
///
/// ```text
/// offset  contents
///    0    header: magic "PUBD", version, chunkCount, chunkStride, payloadCapacity,
///           portID, serviceHash, payloadOffset, checksum
/// 4096    chunk[0] … chunk[chunkCount-1], chunkStride bytes each (a multiple of 64):
///           +0  sequence UInt64     number of the sample, per publisher
///           +8  length   UInt64     payload bytes in this sample
///           +payloadOffset payload[payloadCapacity]   (16, or the payload's
///                                   alignment if larger: a small payload shares
///                                   the header's cache line)
/// ```
/// Subscribers check every chunk index and length they receive against
/// this header before touching the chunk.
package struct PublisherPool: @unchecked Sendable {
    static let kind = SegmentKind("PUBD")
    static let magic = SegmentKind("PUBD")
    static let version: UInt32 = 2
    package static let chunksOffset = 4096
    static let headerBytes = 16

    let data: MappedBytes
    let base: UnsafeMutableRawPointer
    package let chunkCount: Int
    package let chunkStride: Int
    package let payloadCapacity: Int
    package let payloadOffset: Int
    let portID: UInt64

    static func payloadOffset(alignment: Int) -> Int { max(headerBytes, alignment) }

    static func stride(payloadCapacity: Int, alignment: Int) -> Int {
        let unit = max(64, alignment)
        return (payloadOffset(alignment: alignment) + payloadCapacity + unit - 1) / unit * unit
    }

    package static func size(chunkCount: Int, payloadCapacity: Int, alignment: Int) -> Int {
        chunksOffset + chunkCount * stride(payloadCapacity: payloadCapacity, alignment: alignment)
    }

    package static func initialize(_ data: MappedBytes, chunkCount: Int, payloadCapacity: Int, alignment: Int, portID: UInt64, serviceHash: UInt64) {
        data.view(0..<chunksOffset).fill(with: 0)
        LayoutHeader.write(data.unsafeBaseAddress, magic: magic, version: version,
                           fields: [UInt64(chunkCount), UInt64(stride(payloadCapacity: payloadCapacity, alignment: alignment)),
                                    UInt64(payloadCapacity), portID, serviceHash, UInt64(payloadOffset(alignment: alignment))])
    }

    package init(_ data: MappedBytes, expectedPortID: UInt64, serviceHash: UInt64, service: String) throws(ServiceError) {
        let f: [UInt64]
        do { f = try LayoutHeader.read(data, magic: PublisherPool.magic, version: PublisherPool.version, count: 6, what: "publisher pool") }
        catch { throw .corrupt(service: service, reason: error.description) }
        guard f[3] == expectedPortID, f[4] == serviceHash else {
            throw .corrupt(service: service, reason: "publisher pool belongs to another port or service")
        }
        // Bounded before any arithmetic: a hostile header must not trap us.
        guard f[0] >= 1, f[0] <= 1 << 24, f[2] <= 1 << 34, f[5] >= UInt64(PublisherPool.headerBytes), f[5] <= 4096,
              f[5] % 16 == 0, f[1] <= 1 << 36, f[1] >= f[5] + f[2], f[1] % 64 == 0,
              case let (total, overflow) = f[0].multipliedReportingOverflow(by: f[1]), !overflow,
              UInt64(PublisherPool.chunksOffset) + total <= UInt64(data.count) else {
            throw .corrupt(service: service, reason: "publisher pool header does not fit its segment")
        }
        self.data = data
        base = data.unsafeBaseAddress
        chunkCount = Int(f[0])
        chunkStride = Int(f[1])
        payloadCapacity = Int(f[2])
        portID = f[3]
        payloadOffset = Int(f[5])
    }

    @inline(__always)
    func chunk(_ index: Int) -> UnsafeMutableRawPointer {
        base + PublisherPool.chunksOffset + index * chunkStride
    }

    @inline(__always)
    func payload(_ index: Int) -> UnsafeMutableRawPointer { chunk(index) + payloadOffset }

    /// The highest sample sequence number in any chunk: how many samples
    /// the publisher has sent (monitoring; reads every chunk's header).
    func highestSequence() -> UInt64 {
        var highest: UInt64 = 0
        for i in 0..<chunkCount {
            highest = max(highest, chunk(i).load(fromByteOffset: 0, as: UInt64.self))
        }
        return highest
    }
}

/// A subscriber's inbox: segment `svc.<service>.s<portID>`, one connection
/// block per publisher slot of the service.
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
///           +64  lost      UInt64  samples dropped by the overflow policy  } written by the
///           +72  delivered UInt64                                          } publisher only
///           +128 delivery IndexQueue (publisher → subscriber: chunk references)
///           +…   return   IndexQueue (subscriber → publisher: released chunks)
/// ```
/// A publisher claims block i (its slot index in the service) with a CAS of
/// `owner` from 0. When that publisher is gone, the subscriber drains the
/// block, lays its queues out afresh and frees it (owner → 0) for the next
/// publisher in that slot. A publisher that is dropped with samples still
/// queued waits (bounded) for `attached` to name it before it removes its
/// pool's name, so a subscriber that was asleep still gets those samples.
package struct SubscriberInbox: @unchecked Sendable {
    static let kind = SegmentKind("SUBQ")
    static let magic = SegmentKind("SUBQ")
    static let version: UInt32 = 3
    static let parkerOffset = 128, mayParkOffset = 256, epochOffset = 320, blocksOffset = 4096
    static let deliveryOffset = 128

    let data: MappedBytes
    package let maxPublishers: Int
    let deliveryCapacity: Int
    let returnCapacity: Int
    let blockStride: Int
    let portID: UInt64

    static func stride(deliveryCapacity: Int, returnCapacity: Int) -> Int {
        let raw = deliveryOffset + IndexQueue.requiredSize(capacity: deliveryCapacity) + IndexQueue.requiredSize(capacity: returnCapacity)
        return (raw + 127) & ~127
    }

    package static func size(maxPublishers: Int, deliveryCapacity: Int, returnCapacity: Int) -> Int {
        blocksOffset + maxPublishers * stride(deliveryCapacity: deliveryCapacity, returnCapacity: returnCapacity)
    }

    package static func initialize(_ data: MappedBytes, maxPublishers: Int, deliveryCapacity: Int, returnCapacity: Int, portID: UInt64) throws {
        data.view(0..<blocksOffset).fill(with: 0)
        let stride = stride(deliveryCapacity: deliveryCapacity, returnCapacity: returnCapacity)
        LayoutHeader.write(data.unsafeBaseAddress, magic: magic, version: version,
                           fields: [UInt64(maxPublishers), UInt64(deliveryCapacity), UInt64(returnCapacity), UInt64(stride), portID])
        let inbox = try SubscriberInbox(data, expectedPortID: portID, service: "")
        for i in 0..<maxPublishers { try inbox.resetBlock(i) }
    }

    package init(_ data: MappedBytes, expectedPortID: UInt64, service: String) throws(ServiceError) {
        let f: [UInt64]
        do { f = try LayoutHeader.read(data, magic: SubscriberInbox.magic, version: SubscriberInbox.version, count: 5, what: "subscriber inbox") }
        catch { throw .corrupt(service: service, reason: error.description) }
        guard f[4] == expectedPortID else { throw .corrupt(service: service, reason: "subscriber inbox belongs to another port") }
        guard f[0] >= 1, f[0] <= 4096, f[1] >= 2, f[1] <= 1 << 24, f[2] >= 2, f[2] <= 1 << 24,
              f[3] == UInt64(SubscriberInbox.stride(deliveryCapacity: Int(f[1]), returnCapacity: Int(f[2]))),
              UInt64(SubscriberInbox.blocksOffset) + f[0] * f[3] <= UInt64(data.count) else {
            throw .corrupt(service: service, reason: "subscriber inbox header does not fit its segment")
        }
        self.data = data
        maxPublishers = Int(f[0])
        deliveryCapacity = Int(f[1])
        returnCapacity = Int(f[2])
        blockStride = Int(f[3])
        portID = f[4]
    }

    var parker: Parker { Parker(data.unsafeBaseAddress + SubscriberInbox.parkerOffset) }

    var mayPark: UnsafeMutablePointer<Atomic<UInt32>> {
        UnsafeMutablePointer(OpaquePointer(data.unsafeBaseAddress + SubscriberInbox.mayParkOffset))
    }

    var epoch: UnsafeMutablePointer<Atomic<UInt32>> {
        UnsafeMutablePointer(OpaquePointer(data.unsafeBaseAddress + SubscriberInbox.epochOffset))
    }

    func block(_ index: Int) -> MappedBytes {
        data.view(SubscriberInbox.blocksOffset + index * blockStride ..< SubscriberInbox.blocksOffset + (index + 1) * blockStride)
    }

    func owner(_ index: Int) -> UnsafeMutablePointer<Atomic<UInt64>> {
        UnsafeMutablePointer(OpaquePointer(block(index).unsafeBaseAddress))
    }

    func attached(_ index: Int) -> UnsafeMutablePointer<Atomic<UInt64>> {
        UnsafeMutablePointer(OpaquePointer(block(index).unsafeBaseAddress + 8))
    }

    func lost(_ index: Int) -> UnsafeMutablePointer<Atomic<UInt64>> {
        UnsafeMutablePointer(OpaquePointer(block(index).unsafeBaseAddress + 64))
    }

    func delivered(_ index: Int) -> UnsafeMutablePointer<Atomic<UInt64>> {
        UnsafeMutablePointer(OpaquePointer(block(index).unsafeBaseAddress + 72))
    }

    package func deliveryRegion(_ index: Int) -> MappedBytes {
        let start = SubscriberInbox.deliveryOffset
        return block(index).view(start..<start + IndexQueue.requiredSize(capacity: deliveryCapacity))
    }

    package func returnRegion(_ index: Int) -> MappedBytes {
        let start = SubscriberInbox.deliveryOffset + IndexQueue.requiredSize(capacity: deliveryCapacity)
        return block(index).view(start..<start + IndexQueue.requiredSize(capacity: returnCapacity))
    }

    /// Lays out block `index`'s queues afresh (fresh salts, so nothing left
    /// from the previous publisher can be mistaken for a new entry).
    func resetBlock(_ index: Int) throws(QueueError) {
        _ = try IndexQueue.initialize(deliveryRegion(index), capacity: deliveryCapacity)
        _ = try IndexQueue.initialize(returnRegion(index), capacity: returnCapacity)
        lost(index).pointee.store(0, ordering: .relaxed)
        delivered(index).pointee.store(0, ordering: .relaxed)
        attached(index).pointee.store(0, ordering: .relaxed)
    }
}

/// A chunk reference as it travels in the queues: index and length.
enum ChunkReference {
    static func encode(index: Int, length: Int) -> UInt64 { UInt64(UInt32(index)) | UInt64(UInt32(length)) << 32 }
    static func index(_ value: UInt64) -> Int { Int(value & 0xffff_ffff) }
    static func length(_ value: UInt64) -> Int { Int(value >> 32) }
}
