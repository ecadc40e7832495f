import Histogram
import Shm

/// An empty histogram for latencies in nanoseconds (1 ns … 60 s, 3 digits).
func latencyHistogram() -> Histogram<UInt64> {
    Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
}

/// Round trips through a benchmark channel: the parent sends a sequence
/// number, the peer echoes it, the parent records the time. After a warm-up
/// of a tenth of the budget, runs for `duration` seconds or `maxRounds`
/// round trips, whichever comes first (at least 100).
struct PingPong {
    let duration: Double
    let maxRounds: Int
    /// Record round trip ÷ 2 (one-way), or the whole round trip.
    var oneWay = true

    /// Spawns the peer for `session`, runs the round trips, and waits for the peer.
    func measure(_ session: BenchSession, childCPU: Int?, extra: [String] = []) throws -> Histogram<UInt64> {
        let child = try spawnBenchPeer(session, role: "pong", childCPU: childCPU, extra: extra)
        var histogram = latencyHistogram()
        do {
            try run(session.endpoint, into: &histogram)
        } catch {
            child.kill()
            _ = try? child.wait(timeout: .seconds(5))
            throw BenchFailure("\(error); peer: \(child.errorText)")
        }
        try finish(child)
        return histogram
    }

    func run(_ endpoint: some BenchEndpoint, into histogram: inout Histogram<UInt64>) throws {
        let budget = UInt64(duration * 1e9)
        var seq: UInt64 = 0
        let warmupEnd = monotonicNanoseconds() + budget / 10
        while monotonicNanoseconds() < warmupEnd && seq < UInt64(maxRounds / 10 + 100) {
            try endpoint.send(seq)
            guard try endpoint.receive() == seq else { throw BenchFailure("sequence mismatch in warm-up") }
            seq += 1
        }
        let end = monotonicNanoseconds() + budget
        var rounds = 0
        while rounds < maxRounds {
            let t0 = monotonicNanoseconds()
            try endpoint.send(seq)
            let echoed = try endpoint.receive()
            let t1 = monotonicNanoseconds()
            guard echoed == seq else { throw BenchFailure("sent \(seq), got \(echoed) back") }
            _ = histogram.record(oneWay ? (t1 - t0) / 2 : t1 - t0)
            seq += 1
            rounds += 1
            if t1 >= end && rounds >= 100 { break }
        }
        try endpoint.send(.max) // stop
    }
}
