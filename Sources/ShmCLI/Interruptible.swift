import ArgumentParser
import Shm

/// Long-running commands (`pub`, `sub`, `hz`, `log tail --follow`) leave
/// through their normal path on SIGINT, SIGTERM or SIGHUP, so their nodes,
/// ports and segments are released, and exit with 128 + the signal.
enum Interruptible {
    /// How long one wait lasts before the loop looks at the signal flag.
    static let slice: Duration = .milliseconds(100)

    /// Installs the signal handlers (from the main thread, before waiting).
    static func begin() { TerminationSignals.install() }

    /// Throws `ExitCode(128 + signal)` if a termination signal came.
    static func check() throws {
        if let signal = TerminationSignals.received { throw ExitCode(128 + signal) }
    }

    /// Waits in slices: calls `attempt` with the slice to wait (it returns
    /// nil when that slice passed with nothing) until it yields a value, or
    /// `timeout` passes (nil is returned), checking for signals in between.
    static func wait<T: ~Copyable>(timeout: Duration?, _ attempt: (Duration) throws -> T?) throws -> T? {
        let deadline = timeout.map { monotonicNanoseconds() &+ $0.nanoseconds }
        while true {
            try check()
            var wait = slice
            if let deadline {
                let now = monotonicNanoseconds()
                if now >= deadline { return nil }
                wait = min(slice, .nanoseconds(Int64(clamping: deadline - now)))
            }
            let attempted = try attempt(wait)
            switch consume attempted {
            case .some(let value): return value
            case .none: continue
            }
        }
    }
}
