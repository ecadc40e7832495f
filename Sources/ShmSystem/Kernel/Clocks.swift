#if canImport(Glibc)
import Glibc
#endif

// The clocks every layer reads (`clock_gettime(2)`), and the one sleep
// bounded polling loops use. Nanoseconds as UInt64 throughout.

/// Wall-clock time in nanoseconds since the Unix epoch (`clock_gettime(CLOCK_REALTIME)`).
package func wallClockNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// Wall-clock time from the kernel's last tick (`clock_gettime(CLOCK_REALTIME_COARSE)`):
/// a few nanoseconds to read, `coarseWallClockResolution` fine.
package func coarseWallClockNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME_COARSE, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// The resolution of `coarseWallClockNanoseconds` (`clock_getres`), nanoseconds.
package let coarseWallClockResolution: UInt64 = {
    var ts = timespec()
    clock_getres(CLOCK_REALTIME_COARSE, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}()

/// Monotonic time in nanoseconds (`clock_gettime(CLOCK_MONOTONIC)`), for timeouts.
@inlinable
package func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// Sleeps the calling thread (`nanosleep`), used only by bounded polling loops.
package func sleepNanoseconds(_ ns: UInt64) {
    var request = timespec(tv_sec: Int(ns / 1_000_000_000), tv_nsec: Int(ns % 1_000_000_000))
    var remaining = timespec()
    while nanosleep(&request, &remaining) != 0 && Errno.current == .interrupted {
        request = remaining
    }
}

extension Duration {
    /// The duration in whole nanoseconds, clamped to `UInt64`.
    @inlinable
    package var nanoseconds: UInt64 {
        let (seconds, attoseconds) = components
        if seconds < 0 { return 0 }
        let (total, overflow) = UInt64(seconds).multipliedReportingOverflow(by: 1_000_000_000)
        return overflow ? .max : total &+ UInt64(attoseconds / 1_000_000_000)
    }
}

extension Duration {
    /// "300 ms", "2.5 s": how error messages print a timeout.
    package var timeoutDescription: String {
        let ns = nanoseconds
        if ns < 10_000_000_000 { return "\(ns / 1_000_000) ms" }
        return "\(ns / 1_000_000_000).\(ns % 1_000_000_000 / 100_000_000) s"
    }
}
