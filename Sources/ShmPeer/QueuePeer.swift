#if canImport(Glibc)
import Glibc
#endif
import Shm
@_spi(ShmInternals) import ShmPrimitives

/// Message for MPMC tests: producer id (UInt32), sequence (UInt64), and a checksum.
struct QueueRecord {
    var producer: UInt32
    var check: UInt32
    var seq: UInt64

    init(producer: UInt32, seq: UInt64) {
        self.producer = producer
        self.seq = seq
        self.check = QueueRecord.checksum(producer, seq)
    }

    static func checksum(_ producer: UInt32, _ seq: UInt64) -> UInt32 {
        UInt32(truncatingIfNeeded: (seq &* 0x9e37_79b9_7f4a_7c15) >> 32) ^ producer &* 2_654_435_761
    }

    var isValid: Bool { check == QueueRecord.checksum(producer, seq) }
}

/// Enqueues `count` records as producer `id`.
func queueProduce(_ name: String, id: UInt32, count: UInt64) throws {
    let queue = try MessageQueue.open(name)
    for seq in 0..<count {
        try queue.send(value: QueueRecord(producer: id, seq: seq), timeout: .seconds(60))
    }
    print("produced \(count)")
}

/// Dequeues until `total` records were taken by all consumers together
/// (counted in the results segment), marking each in this consumer's bitmap.
///
/// Results segment layout: [taken: UInt64 (atomic)] then, per consumer, a
/// bitmap of producers × perProducer bits.
func queueConsume(_ name: String, results: String, consumer: Int, producers: Int, perProducer: UInt64) throws {
    let queue = try MessageQueue.open(name)
    let shared = try SharedMemorySegment.open(results)
    let taken = SharedAtomic<UInt64>(shared.data, offset: 0)
    let bitsPerConsumer = producers * Int(perProducer)
    let bitmap = shared.data.view(8 + consumer * ((bitsPerConsumer + 7) / 8) ..< 8 + (consumer + 1) * ((bitsPerConsumer + 7) / 8))
    let total = UInt64(producers) * perProducer
    var mine = 0
    var lastSeq = [Int64](repeating: -1, count: producers)
    while taken.unsafeAtomic.pointee.load(ordering: .relaxed) < total {
        let record: QueueRecord
        do {
            record = try queue.receive(QueueRecord.self, timeout: .milliseconds(200))
        } catch .timedOut {
            continue
        }
        guard record.isValid, Int(record.producer) < producers, record.seq < perProducer else {
            throw PayloadError("invalid record \(record)")
        }
        guard Int64(record.seq) > lastSeq[Int(record.producer)] else {
            throw PayloadError("producer \(record.producer): seq \(record.seq) after \(lastSeq[Int(record.producer)])")
        }
        lastSeq[Int(record.producer)] = Int64(record.seq)
        let bit = Int(record.producer) * Int(perProducer) + Int(record.seq)
        let byte = bitmap[bit / 8]
        guard byte & (1 << (bit % 8)) == 0 else { throw PayloadError("duplicate \(record)") }
        bitmap[bit / 8] = byte | (1 << (bit % 8))
        taken.unsafeAtomic.pointee.wrappingAdd(1, ordering: .relaxed)
        mine += 1
    }
    print("consumed \(mine)")
}

/// Claims a slot and hangs without publishing (killed mid-write).
func queueClaimAndHang(_ name: String) throws {
    let queue = try MessageQueue.open(name)
    guard try queue.claimAndAbandonForTesting() else { throw PayloadError("queue full") }
    print("claimed")
    while true { sleep(60) }
}
