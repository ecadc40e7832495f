#if canImport(Glibc)
import Glibc
#endif
import Shm
import ShmTestSupport

/// Publishes `count` growing samples (`growthLength`: 8 B up to 4 MB) once
/// a subscriber is there; prints "sent N in S segments (G grown, R
/// retired)"; then, if `hold`, stays (to be killed) else leaves at once —
/// its samples must still arrive.
func growthPublish(_ name: String, count: Int, hold: Bool) throws {
    let node = try Node(name: "peer-growth")
    let publisher = try growthService(node, name).publisher(sendTimeout: .seconds(30))
    guard try publisher.waitForSubscribers(1, timeout: .seconds(30)) else { throw PayloadError("no subscriber") }
    for n in 0..<count {
        let sample = try publisher.loanUninitialized(count: growthLength(n, of: count))
        growthFill(sample.unsafeBuffer, n)
        try sample.assumeInitialized().send()
    }
    let footprint = publisher.footprint
    print("sent \(count) in \(footprint.segments) segments (\(footprint.grown) grown, \(footprint.retired) retired)")
    if hold { while true { sleep(1) } }
}
