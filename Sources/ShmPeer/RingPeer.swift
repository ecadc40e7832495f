#if canImport(Glibc)
import Glibc
#endif
import Shm

/// Produces `count` self-checking messages into ring `name`, alternating the
/// copy, closure zero-copy and claim/commit APIs.
func ringProduce(_ name: String, count: UInt64, strategy: WaitStrategy) throws {
    // Long waits for room: an async consumer in the test process resumes on
    // the cooperative pool, which the suite's blocking tests can occupy for
    // tens of seconds on a 2-vCPU machine (seen in CI: a 30 s wait expired).
    let patience: Duration = .seconds(120)
    let producer = try MessageRing.open(name).producer(waitStrategy: strategy)
    var scratch = [UInt8](repeating: 0, count: 256)
    for seq in 0..<count {
        let length = Payload.length(seq)
        switch seq % 3 {
        case 0:
            try scratch.withUnsafeMutableBytes { buffer in
                Payload.fill(buffer, seq: seq)
                try producer.send(UnsafeRawBufferPointer(rebasing: buffer[0..<length]), timeout: patience)
            }
        case 1:
            try producer.send(count: length, timeout: patience) { (buffer) throws(Never) -> Int in
                Payload.fill(buffer, seq: seq)
                return length
            }
        default:
            let claim = try producer.claim(count: 256, timeout: patience)
            Payload.fill(claim.unsafeBytes, seq: seq)
            claim.commit(count: length)
        }
    }
    print("produced \(count)")
}

/// Consumes `count` messages from ring `name`, checking order and contents.
func ringConsume(_ name: String, count: UInt64, strategy: WaitStrategy) throws {
    let consumer = try MessageRing.open(name).consumer(waitStrategy: strategy)
    var buffer = [UInt8](repeating: 0, count: 256)
    var expected: UInt64 = 0
    func verify(_ bytes: UnsafeRawBufferPointer) throws {
        let seq = try Payload.check(bytes).get()
        guard seq == expected else { throw PayloadError("got seq \(seq), expected \(expected)") }
        expected += 1
    }
    while expected < count {
        switch expected % 3 {
        case 0:
            try buffer.withUnsafeMutableBytes { raw in
                let n = try consumer.receive(into: raw, timeout: .seconds(30))
                try verify(UnsafeRawBufferPointer(rebasing: raw[0..<n]))
            }
        case 1:
            let message = try consumer.read(timeout: .seconds(30))
            try verify(message.unsafeBytes)
            message.release()
        default:
            var failure: (any Error)?
            _ = try consumer.drain(limit: 64) { bytes in
                if failure == nil { do { try verify(bytes) } catch { failure = error } }
            }
            if let failure { throw failure }
            if expected % 3 == 2 { _ = try consumer.waitForMessage(timeout: .seconds(30)) }
        }
    }
    print("consumed \(count) in order")
}

/// Becomes the producer, claims room, announces it, and hangs (to be killed mid-claim).
func ringClaimAndHang(_ name: String) throws {
    let producer = try MessageRing.open(name).producer()
    let claim = try producer.claim(count: 64, timeout: .seconds(5))
    claim.unsafeBytes.storeBytes(of: UInt64.max, as: UInt64.self)
    print("claimed")
    while true { sleep(60) }
}

/// Becomes the consumer and waits for a message that never comes (to be killed while parked).
func ringParkAndHang(_ name: String) throws {
    let consumer = try MessageRing.open(name).consumer(waitStrategy: .block)
    print("parking")
    _ = try consumer.waitForMessage(timeout: .seconds(600))
    print("woke")
    while true { sleep(60) }
}
