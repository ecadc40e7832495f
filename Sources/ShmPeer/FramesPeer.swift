#if canImport(Glibc)
import Glibc
#endif
import Shm

/// The frame service as the C ABI's defaults make it (swiftshm.h,
/// shm_pubsub_options_init) with overflow "block": byte slices of up to
/// `bytes` bytes. Languages agree on the service by name, payload type
/// ("[Swift.UInt8]" slices) and configuration.
func frameService(_ node: Node, _ name: String, bytes: Int) throws -> PublishSubscribeService<UInt8> {
    try node.publishSubscribe(name, slicesOf: UInt8.self, maxLength: bytes,
                              config: .init(maxPublishers: 8, maxSubscribers: 8, subscriberBufferSize: 8, historySize: 0,
                                            maxLoans: 4, maxBorrowed: 4, overflow: .block))
}

/// Publishes `count` frames (number, then (number + i) & 0xff) once a
/// subscriber is there — the same frames as Examples/c/frames.c.
func framesPublish(_ name: String, count: Int, bytes: Int) throws {
    let node = try Node(name: "peer-frames")
    let publisher = try frameService(node, name, bytes: bytes).publisher()
    publisher.sendTimeout = .seconds(30)
    guard try publisher.waitForSubscribers(1, timeout: .seconds(30)) else { throw PayloadError("no subscriber") }
    for n in 0..<UInt64(count) {
        let sample = try publisher.loanUninitialized(count: bytes)
        let frame = sample.unsafeBuffer
        withUnsafeBytes(of: n) { for i in 0..<8 { frame[i] = $0[i] } }
        for i in 8..<bytes { frame[i] = UInt8(truncatingIfNeeded: n &+ UInt64(i)) }
        try sample.assumeInitialized().send()
    }
    print("sent \(count)")
}

/// Receives `count` frames and checks each; prints "received N, K intact, L lost".
func framesSubscribe(_ name: String, count: Int, bytes: Int) throws {
    let node = try Node(name: "peer-frames")
    let subscriber = try frameService(node, name, bytes: bytes).subscriber()
    print("subscribed")
    var intact = 0
    for n in 0..<UInt64(count) {
        let sample = try subscriber.receive(timeout: .seconds(30))
        let frame = sample.unsafeBuffer
        var number: UInt64 = 0
        withUnsafeMutableBytes(of: &number) { for i in 0..<8 { $0[i] = frame[i] } }
        var ok = number == n && frame.count >= 8
        if ok { for i in 8..<frame.count where frame[i] != UInt8(truncatingIfNeeded: number &+ UInt64(i)) { ok = false; break } }
        if ok { intact += 1 }
    }
    print("received \(count), \(intact) intact, \(subscriber.lostSamples) lost")
}
