/// Summary of a set of timings (nanoseconds), by exact order statistics.
struct Summary: Encodable {
    let count: Int
    let min: UInt64
    let p50: UInt64
    let p90: UInt64
    let p99: UInt64
    let max: UInt64

    init(_ samples: [UInt64]) {
        let sorted = samples.sorted()
        func at(_ q: Double) -> UInt64 {
            guard !sorted.isEmpty else { return 0 }
            return sorted[Swift.min(sorted.count - 1, Int((Double(sorted.count - 1) * q).rounded()))]
        }
        count = sorted.count
        min = sorted.first ?? 0
        p50 = at(0.5)
        p90 = at(0.9)
        p99 = at(0.99)
        max = sorted.last ?? 0
    }
}

/// Human-readable duration from nanoseconds: `812 ns`, `12.3 µs`, `4.56 ms`, `1.23 s`.
func formatNanoseconds(_ ns: Double) -> String {
    if ns < 1_000 { return "\(Int(ns.rounded())) ns" }
    if ns < 1_000_000 { return "\(String(format1: ns / 1_000)) µs" }
    if ns < 1_000_000_000 { return "\(String(format1: ns / 1_000_000)) ms" }
    return "\(String(format1: ns / 1_000_000_000)) s"
}

/// `1.52x`.
func formatRatio(_ value: Double) -> String {
    let hundredths = Int((value * 100).rounded())
    let fraction = hundredths % 100
    return "\(hundredths / 100).\(fraction < 10 ? "0" : "")\(fraction)x"
}
