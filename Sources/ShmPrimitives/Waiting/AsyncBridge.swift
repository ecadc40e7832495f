import Synchronization
import ShmSystem

/// The one bridge from `async` code to the blocking waits: every `async`
/// receive, send, dequeue, wait-set wait and log tail goes through it.
///
/// `wait` runs `attempt(until:)` on a `BlockingPool` thread — never on
/// Swift's cooperative pool — in slices, until it returns a value, the
/// deadline passes (nil), or the task is cancelled (`CancellationError`).
/// Cancellation sets a flag and wakes `parkers` (every sleeper on them:
/// spurious wake-ups are harmless to others), so the thread notices at once;
/// the slice only bounds the rare race of a wake that lands between the
/// thread's look at the flag and its sleep.
package enum AsyncBridge {
    /// A flag a cancelled task sets for the pool thread waiting on its behalf.
    package final class Cancellation: Sendable {
        private let cancelled = Atomic<Bool>(false)
        package init() {}
        package var isCancelled: Bool {
            // SYNC POINT: acquire pairs with the release store in `cancel`.
            cancelled.load(ordering: .acquiring)
        }
        package func cancel() {
            // SYNC POINT: release pairs with the acquire load in `isCancelled`.
            cancelled.store(true, ordering: .releasing)
        }
    }

    /// The slice a pool thread waits at most before it looks at the flag.
    package static let defaultSlice: Duration = .milliseconds(50)

    /// - Parameters:
    ///   - parkers: where the attempt sleeps; woken on cancellation.
    ///   - deadline: monotonic nanoseconds (nil: none).
    ///   - attempt: waits at most until its argument (monotonic ns) and
    ///     returns a value, or nil when nothing came in that slice.
    /// - Returns: the attempt's value, or nil once the deadline passed.
    /// - Throws: `CancellationError`, or what `attempt` throws.
    package static func wait<T: Sendable, E: Error>(
        wakingOnCancel parkers: [Parker], deadline: UInt64?, slice: Duration = defaultSlice,
        _ attempt: @escaping @Sendable (_ until: UInt64) throws(E) -> T?
    ) async throws -> T? {
        let cancellation = Cancellation()
        let sliceNanoseconds = slice.nanoseconds
        let result = try await withTaskCancellationHandler {
            try await BlockingPool.shared.run { () throws(E) -> T? in
                while !cancellation.isCancelled {
                    let now = monotonicNanoseconds()
                    if let deadline, now >= deadline { return nil }
                    if let value = try attempt(min(deadline ?? .max, now &+ sliceNanoseconds)) { return value }
                }
                return nil
            }
        } onCancel: {
            cancellation.cancel()
            for parker in parkers { parker.wake(count: Int32.max) }
        }
        try Task.checkCancellation()
        return result
    }

    /// The time left until `until` (monotonic ns), for blocking calls that take a timeout.
    package static func remaining(until: UInt64) -> Duration {
        .nanoseconds(Int64(bitPattern: until &- min(until, monotonicNanoseconds())))
    }
}
