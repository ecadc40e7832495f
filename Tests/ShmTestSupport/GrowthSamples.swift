import Shm

// The growing-pool samples tests and the peer program exchange across
// processes (`grow-pub`): defined once, here, so both ends agree.

/// A byte-slice service whose publishers' pools grow (`PoolAllocation`):
/// samples of up to 4 MB, a deep buffer and the `.block` policy (nothing
/// is lost, so a test can count every sample).
public func growthService(_ node: Node, _ name: String) throws -> PublishSubscribeService<UInt8> {
    try node.publishSubscribe(name, slicesOf: UInt8.self, maxLength: 4_000_000,
                              config: .init(maxPublishers: 2, maxSubscribers: 2, subscriberBufferSize: 64, historySize: 0,
                                            maxLoans: 4, maxBorrowed: 4, overflow: .block))
}

/// Length of sample `n` of `count`: six steps up, 8 B to 4 MB, so a pool
/// grows in chunk size five times (and in chunks when samples pile up).
public func growthLength(_ n: Int, of count: Int) -> Int {
    let steps = [8, 100, 1_000, 64_000, 1_000_000, 4_000_000]
    return steps[min(steps.count - 1, n * steps.count / max(1, count))]
}

/// Byte `i` of sample `n` (after its 8-byte number).
@inline(__always)
public func growthByte(_ n: Int, _ i: Int) -> UInt8 { UInt8(truncatingIfNeeded: n &* 31 &+ i) }

/// Fills a loaned growing sample as sample `n`.
public func growthFill(_ buffer: UnsafeMutableBufferPointer<UInt8>, _ n: Int) {
    withUnsafeBytes(of: UInt64(n)) { for i in 0..<min(8, buffer.count) { buffer[i] = $0[i] } }
    for i in stride(from: 8, to: buffer.count, by: 1) { buffer[i] = growthByte(n, i) }
}

/// True if `bytes` are sample `n` of `count`: its length, number and bytes.
public func growthSampleIsIntact(_ bytes: UnsafeBufferPointer<UInt8>, _ n: Int, of count: Int) -> Bool {
    guard bytes.count == growthLength(n, of: count) else { return false }
    var number: UInt64 = 0
    withUnsafeMutableBytes(of: &number) { for i in 0..<min(8, bytes.count) { $0[i] = bytes[i] } }
    if bytes.count >= 8, number != UInt64(n) { return false }
    for i in stride(from: 8, to: bytes.count, by: 1) where bytes[i] != growthByte(n, i) { return false }
    return true
}
