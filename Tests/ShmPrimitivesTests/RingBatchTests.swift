import Testing
import ShmTestSupport
@testable import ShmPrimitives
@testable import ShmSystem

/// `publishBatch`: the consumer sees a batch all at once, never part of it;
/// a ring that fills inside a batch publishes what it holds (no deadlock).
@Suite("SPSC ring batches")
struct RingBatchTests {
    @Test func aBatchAppearsAllAtOnce() throws {
        let ring = try makeRing(capacity: 4096)
        let producer = try ring.producer(waitStrategy: .busySpin)
        let consumer = try ring.consumer(waitStrategy: .busySpin)
        try producer.publishBatch { () throws(QueueError) -> Void in
            for value in 0..<10 as Range<UInt64> {
                try producer.send(value: value)
                #expect(try consumer.tryReceive(UInt64.self) == nil, "message \(value) visible inside the batch")
            }
        }
        var received: [UInt64] = []
        while let value = try consumer.tryReceive(UInt64.self) { received.append(value) }
        #expect(received == Array(0..<10))
        // After the batch, messages are visible one by one again.
        try producer.send(value: UInt64(10))
        #expect(try consumer.tryReceive(UInt64.self) == 10)
    }

    @Test func aBatchLargerThanTheRingDoesNotDeadlock() throws {
        let ring = try makeRing(capacity: 4096)
        let producer = try ring.producer(waitStrategy: .default)
        let consumer = try ring.consumer(waitStrategy: .default)
        let count: UInt64 = 20_000
        let box = UncheckedSendable(consumer)
        var received: [UInt64] = []
        let reader = TestThread {
            while UInt64(received.count) < count, let value = try? box.value.receive(UInt64.self, timeout: .seconds(10)) {
                received.append(value)
            }
        }
        try producer.publishBatch { () throws(QueueError) -> Void in
            for value in 0..<count { try producer.send(value: value, timeout: .seconds(10)) }
        }
        reader.join()
        #expect(received == Array(0..<count))
    }
}
