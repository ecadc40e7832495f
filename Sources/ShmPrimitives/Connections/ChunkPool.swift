import Synchronization
import ShmSystem

/// One segment of a sender's pool of fixed-size chunks in shared memory,
/// mapped read-write by its publisher and read-only by subscribers, who
/// read samples in place. A pool is one segment (`svc.<service>.p<portID>`,
/// segment 0) or, when it grows on demand, several: segment k ≥ 1 is
/// `svc.<service>.p<portID>-<k>` (k in decimal), each with its own chunk
/// count and chunk size, created (and `posix_fallocate`d) when the sender
/// needs more or larger chunks.
///
/// ```text
/// offset  contents
///    0    header: magic "PUBD", version, chunkCount, chunkStride, payloadCapacity,
///           portID, serviceHash, payloadOffset, segmentNumber, checksum
///  128    segmentCount UInt32   (segment 0 only) segments the sender has
///                               created: every segment below it exists
///                               (or was retired empty) before any reference
///                               into it is sent
/// 4096    chunk[0] … chunk[chunkCount-1], chunkStride bytes each (a multiple of 64):
///           +0  sequence UInt64     number of the sample, per publisher (from 1)
///           +8  length   UInt32     payload bytes in this sample
///           +12 next     UInt32     the chunk the sender expects to loan next
///                                   (a hint: 0xffff_ffff none), so that a
///                                   receiver can fetch that chunk's line while
///                                   it polls for the next reference
///           +payloadOffset payload[payloadCapacity]   (16, or the payload's
///                                   alignment if larger: a small payload shares
///                                   the header's cache line)
/// ```
/// Receivers check every chunk index and length they receive against this
/// header before touching the chunk (`ChunkReference`: segment number and
/// index in the segment). The chunk header
/// is written by the sender before it publishes the chunk's reference (the
/// delivery queue's release/acquire orders it); it holds no atomics.
@_spi(ShmInternals) public struct ChunkPool: @unchecked Sendable {
    package static let kind = SegmentKind("PUBD")
    static let magic = SegmentKind("PUBD")
    static let version: UInt32 = 4 // 4: segments (number in the header, count in segment 0)
    public static let chunksOffset = 4096
    static let headerBytes = 16
    /// Byte offset of segment 0's `segmentCount` word.
    static let segmentCountOffset = 128
    /// Segments a pool may have (numbers 0…254; a reference's segment byte
    /// 255 is never valid, so `noHint` resolves to no chunk).
    public static let maxSegments = 255
    /// Chunks one segment may have (a reference's index field is 24 bits).
    public static let maxChunksPerSegment = (1 << 24) - 1

    /// Byte offsets inside a chunk (the table above).
    public enum ChunkOffset {
        public static let sequence = 0, length = 8, next = 12
    }

    /// `next` when the sender has no guess.
    public static let noHint: UInt32 = .max

    let data: MappedBytes
    @usableFromInline let base: UnsafeMutableRawPointer
    package let chunkCount: Int
    @usableFromInline package let chunkStride: Int
    package let payloadCapacity: Int
    @usableFromInline package let payloadOffset: Int
    let portID: UInt64
    /// Which segment of its pool this is (0: the first, named without suffix).
    package let segmentNumber: Int

    static func payloadOffset(alignment: Int) -> Int { max(headerBytes, alignment) }

    static func stride(payloadCapacity: Int, alignment: Int) -> Int {
        let unit = max(64, alignment)
        return (payloadOffset(alignment: alignment) + payloadCapacity + unit - 1) / unit * unit
    }

    package static func size(chunkCount: Int, payloadCapacity: Int, alignment: Int) -> Int {
        chunksOffset + chunkCount * stride(payloadCapacity: payloadCapacity, alignment: alignment)
    }

    package static func initialize(_ data: MappedBytes, chunkCount: Int, payloadCapacity: Int, alignment: Int, portID: UInt64,
                                   serviceHash: UInt64, segmentNumber: Int = 0) {
        data.view(0..<chunksOffset).fill(with: 0)
        LayoutHeader.write(data.unsafeBaseAddress, magic: magic, version: version,
                           fields: [UInt64(chunkCount), UInt64(stride(payloadCapacity: payloadCapacity, alignment: alignment)),
                                    UInt64(payloadCapacity), portID, serviceHash, UInt64(payloadOffset(alignment: alignment)),
                                    UInt64(segmentNumber)])
        if segmentNumber == 0 {
            UnsafeMutablePointer<Atomic<UInt32>>(OpaquePointer(data.unsafeBaseAddress + segmentCountOffset))
                .pointee.store(1, ordering: .relaxed) // published by the segment's ready flag
        }
    }

    /// Validates the header another process wrote.
    /// - Throws: `.invalidLayout` naming what does not fit.
    package init(_ data: MappedBytes, expectedPortID: UInt64, serviceHash: UInt64, segmentNumber: Int = 0) throws(QueueError) {
        let f = try LayoutHeader.read(data, magic: ChunkPool.magic, version: ChunkPool.version, count: 7, what: "publisher pool")
        guard f[3] == expectedPortID, f[4] == serviceHash else {
            throw .invalidLayout("publisher pool belongs to another port or service")
        }
        guard f[6] == UInt64(segmentNumber) else {
            throw .invalidLayout("publisher pool segment says it is number \(f[6]), expected \(segmentNumber)")
        }
        // Bounded before any arithmetic: a hostile header must not trap us.
        guard f[0] >= 1, f[0] <= UInt64(ChunkPool.maxChunksPerSegment), f[2] <= 1 << 34, f[5] >= UInt64(ChunkPool.headerBytes), f[5] <= 4096,
              f[5] % 16 == 0, f[1] <= 1 << 36, f[1] >= f[5] + f[2], f[1] % 64 == 0,
              case let (total, overflow) = f[0].multipliedReportingOverflow(by: f[1]), !overflow,
              UInt64(ChunkPool.chunksOffset) + total <= UInt64(data.count) else {
            throw .invalidLayout("publisher pool header does not fit its segment")
        }
        self.data = data
        base = data.unsafeBaseAddress
        chunkCount = Int(f[0])
        chunkStride = Int(f[1])
        payloadCapacity = Int(f[2])
        portID = f[3]
        payloadOffset = Int(f[5])
        self.segmentNumber = segmentNumber
    }

    private var segmentCountWord: UnsafeMutablePointer<Atomic<UInt32>> {
        UnsafeMutablePointer(OpaquePointer(base + ChunkPool.segmentCountOffset))
    }

    /// Segments the sender has created (read from segment 0; at most
    /// `maxSegments` whatever the word holds).
    package func segmentCount() -> Int {
        // SYNC POINT: acquire pairs with the release store in `publishSegmentCount`:
        // every segment below the count exists once the count is seen.
        min(Int(segmentCountWord.pointee.load(ordering: .acquiring)), ChunkPool.maxSegments)
    }

    /// The sender announces segment `count - 1` (on segment 0), after
    /// creating it and before sending any reference into it.
    package func publishSegmentCount(_ count: Int) {
        // SYNC POINT: release pairs with the acquire load in `segmentCount`
        // (a receiver reads it after popping a reference into a new segment,
        // whose push is later still).
        segmentCountWord.pointee.store(UInt32(count), ordering: .releasing)
    }

    @inlinable @inline(__always)
    public func chunk(_ index: Int) -> UnsafeMutableRawPointer {
        base + ChunkPool.chunksOffset + index * chunkStride
    }

    @inlinable @inline(__always)
    public func payload(_ index: Int) -> UnsafeMutableRawPointer { chunk(index) + payloadOffset }

    /// The chunk's sample sequence number and payload length (its header).
    @inlinable @inline(__always)
    public func header(_ index: Int) -> (sequence: UInt64, length: UInt64) {
        let c = chunk(index)
        return (c.load(fromByteOffset: ChunkOffset.sequence, as: UInt64.self),
                UInt64(c.load(fromByteOffset: ChunkOffset.length, as: UInt32.self)))
    }

    /// Writes the chunk's header (the sender, before publishing its reference).
    @inlinable @inline(__always)
    public func setHeader(_ index: Int, sequence: UInt64, length: Int, next: UInt32) {
        ChunkPool.setHeader(chunk(index), sequence: sequence, length: length, next: next)
    }

    /// Writes the header of the chunk at `c` (the sender, before publishing
    /// its reference; `c` is a chunk's first byte in a mapped pool segment).
    @inlinable @inline(__always)
    public static func setHeader(_ c: UnsafeMutableRawPointer, sequence: UInt64, length: Int, next: UInt32) {
        c.storeBytes(of: sequence, toByteOffset: ChunkOffset.sequence, as: UInt64.self)
        c.storeBytes(of: UInt32(truncatingIfNeeded: length), toByteOffset: ChunkOffset.length, as: UInt32.self)
        c.storeBytes(of: next, toByteOffset: ChunkOffset.next, as: UInt32.self)
    }

    /// The highest sample sequence number in any chunk: how many samples
    /// the sender has sent (monitoring; reads every chunk's header).
    package func highestSequence() -> UInt64 {
        (0..<chunkCount).reduce(0) { max($0, header($1).sequence) }
    }
}

/// A chunk reference as it travels in the delivery and return queues:
///
/// ```text
/// bits  0…23  chunk index in its segment
///      24…31  segment number of the pool (0…254)
///      32…63  the sample's length in bytes
/// ```
/// The low 32 bits (segment and index) are the chunk's *ID*; the chunk
/// header's `next` hint holds an ID too (all ones: none).
@_spi(ShmInternals) public enum ChunkReference {
    @inlinable @inline(__always)
    public static func encode(id: UInt32, length: Int) -> UInt64 { UInt64(id) | UInt64(UInt32(truncatingIfNeeded: length)) << 32 }
    /// The ID of chunk `index` of segment `segment`.
    @inlinable @inline(__always)
    public static func id(segment: Int, index: Int) -> UInt32 { UInt32(truncatingIfNeeded: segment << 24 | index) }
    @inlinable @inline(__always)
    public static func id(_ value: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: value) }
    @inlinable @inline(__always)
    public static func segment(ofID id: UInt32) -> Int { Int(id >> 24) }
    @inlinable @inline(__always)
    public static func index(ofID id: UInt32) -> Int { Int(id & 0xff_ffff) }
    @inlinable @inline(__always)
    public static func length(_ value: UInt64) -> Int { Int(value >> 32) }
}
