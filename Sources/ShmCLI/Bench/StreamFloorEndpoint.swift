import Synchronization
import Shm

/// The streaming floor for `shm bench throughput`: the bytes the ring moves
/// per message — a record of the ring's size (16-byte header, payload
/// rounded to 16) in a 1 MiB data area — between two pinned processes with
/// no per-record protocol: the producer writes each record's two header
/// words and 8-byte sequence number (what the zero-copy ring producer
/// writes) and publishes how many records it wrote once per batch; the
/// consumer reads those three words of each record (as the ring's consumer
/// does) and frees space once per drain. No tags,
/// no checks of what the other side wrote: an upper bound for any ring with
/// this record size on this machine, not a usable queue.
///
/// ```text
/// offset  contents
///      0  tail: UInt64, records published (producer)
///    128  head: UInt64, records consumed (consumer)
///    256  ack: UInt64, 1 when the consumer has read everything
///   4096  data: records of `span` bytes, slot after slot, wrapping at
///         the last whole slot (position at +0, length at +8, sequence at +16)
/// ```
final class StreamFloorEndpoint: BenchEndpoint {
    static let tailOffset = 0, headOffset = 128, ackOffset = 256, dataOffset = 4096
    static let dataBytes = 1 << 20
    static let segmentSize = dataOffset + dataBytes
    /// Where a record's fields are (the ring's record layout).
    enum RecordOffset {
        static let header = 0, meta = 8, sequence = 16
    }

    let size: Int
    let span: Int
    let slots: Int
    let tail: SharedAtomic<UInt64>
    let head: SharedAtomic<UInt64>
    let ack: SharedAtomic<UInt64>
    let data: UnsafeMutableRawPointer
    /// This side's position (records) and slot.
    var position: UInt64 = 0
    var slot = 0

    init(bytes: MappedBytes, size: Int) {
        self.size = size
        span = 16 + ((max(size, 8) + 15) & ~15)
        slots = StreamFloorEndpoint.dataBytes / span
        tail = SharedAtomic(bytes, offset: StreamFloorEndpoint.tailOffset)
        head = SharedAtomic(bytes, offset: StreamFloorEndpoint.headOffset)
        ack = SharedAtomic(bytes, offset: StreamFloorEndpoint.ackOffset)
        data = bytes.unsafeBaseAddress + StreamFloorEndpoint.dataOffset
    }

    @inline(__always)
    func advance() {
        position &+= 1
        slot = slot + 1 == slots ? 0 : slot + 1
    }

    /// The producer: `count` records, published `batch` at a time.
    func produce(count: Int, batch: Int) throws {
        let slots = UInt64(self.slots), meta = UInt64(size) | 1 << 32
        var freed: UInt64 = 0
        var deadline: UInt64 = 0
        while position < UInt64(count) {
            let end = min(UInt64(count), position + UInt64(max(1, batch)))
            while end - freed > slots {
                // SYNC POINT: acquire pairs with the consumer's release store of head.
                freed = head.unsafeAtomic.pointee.load(ordering: .acquiring)
                CPU.relax()
                let now = monotonicNanoseconds()
                if deadline == 0 { deadline = now + benchReceiveTimeout.nanoseconds } else if now > deadline {
                    throw BenchFailure("stream floor: consumer stalled at \(freed)")
                }
            }
            deadline = 0
            while position < end {
                let record = data + slot * span
                record.storeBytes(of: position, toByteOffset: RecordOffset.header, as: UInt64.self)
                record.storeBytes(of: meta, toByteOffset: RecordOffset.meta, as: UInt64.self)
                record.storeBytes(of: position, toByteOffset: RecordOffset.sequence, as: UInt64.self)
                advance()
            }
            // SYNC POINT: release pairs with the consumer's acquire load of tail.
            tail.unsafeAtomic.pointee.store(position, ordering: .releasing)
        }
        // The consumer's acknowledgement: our mapping stays until it has read everything.
        let until = monotonicNanoseconds() + benchReceiveTimeout.nanoseconds
        // SYNC POINT: acquire pairs with the consumer's release store of ack.
        while ack.unsafeAtomic.pointee.load(ordering: .acquiring) == 0, monotonicNanoseconds() < until { CPU.relax() }
    }

    /// The consumer: reads `count` records in order (checking each sequence
    /// number), backing off after small drains as the ring's benchmark
    /// consumer does; returns nanoseconds from the first record to the last.
    func drainCount(_ count: Int) throws -> UInt64 {
        var start: UInt64 = 0
        var backoff = 1
        let deadline = monotonicNanoseconds() + benchReceiveTimeout.nanoseconds * 6
        while position < UInt64(count) {
            // SYNC POINT: acquire pairs with the producer's release store of tail.
            let published = tail.unsafeAtomic.pointee.load(ordering: .acquiring)
            let n = published &- position
            if n > 0 && start == 0 { start = monotonicNanoseconds() }
            while position < published {
                // What the ring's consumer reads: the record's header words, then the payload's first word.
                let record = data + slot * span
                let header = record.load(fromByteOffset: RecordOffset.header, as: UInt64.self)
                let meta = record.load(fromByteOffset: RecordOffset.meta, as: UInt64.self)
                let seq = record.load(fromByteOffset: RecordOffset.sequence, as: UInt64.self)
                guard seq == position, header == position, meta & 0xFFFF_FFFF == UInt64(size) else {
                    throw BenchFailure("stream floor: expected record \(position), got \(seq) (header \(header), meta \(meta))")
                }
                advance()
            }
            if n > 0 {
                // SYNC POINT: release pairs with the producer's acquire load of head.
                head.unsafeAtomic.pointee.store(position, ordering: .releasing)
            }
            if n < 16 {
                if n == 0 && monotonicNanoseconds() > deadline { throw BenchFailure("stream floor: producer stalled at \(position)") }
                for _ in 0..<backoff { CPU.relax() }
                backoff = min(backoff * 2, 512)
            } else {
                backoff = 1
            }
        }
        let end = monotonicNanoseconds()
        // SYNC POINT: release pairs with the producer's acquire load of ack.
        ack.unsafeAtomic.pointee.store(1, ordering: .releasing)
        return end - start
    }

    // Not a ping-pong channel (one direction only): `shm bench throughput` uses
    // `produce` and `drainCount`.
    func send(_ seq: UInt64) throws { throw BenchFailure("the stream floor measures throughput only") }
    func receive() throws -> UInt64 { throw BenchFailure("the stream floor measures throughput only") }
}
