import Synchronization

/// The `Waiter` of a handle that several threads may wait on at once (a
/// `MessageQueue`, `SharedEvent` or `SharedSemaphore` object): the strategy
/// is fixed when the handle is made, and the spin budget learns from every
/// wait through the handle, as a port's does.
///
/// A wait copies the waiter out under a process-local lock, waits with the
/// copy, and stores the adapted copy back: the lock is never held while
/// spinning or asleep, so threads waiting on one handle never wait for each
/// other; when two waits overlap the last to finish sets the budget (it is
/// a heuristic, not state anyone relies on). Costs two uncontended lock
/// round trips per wait that found nothing ready, none on the fast path.
package final class HandleWaiter: Sendable {
    package let strategy: WaitStrategy
    private let state: Mutex<Waiter>

    package init(_ strategy: WaitStrategy) {
        self.strategy = strategy
        state = Mutex(Waiter(strategy))
    }

    /// Carries a port's waiter through a wait on another thread (`async`
    /// waits run on a `BlockingPool` thread, slice by slice); read it back
    /// with `current` afterwards.
    package init(continuing waiter: Waiter) {
        strategy = waiter.strategy
        state = Mutex(waiter)
    }

    /// The waiter as the last wait left it.
    package var current: Waiter { state.withLock { $0 } }

    /// Runs `body` with this handle's waiter, then keeps what it learned.
    package func withWaiter<R, E: Error>(_ body: (inout Waiter) throws(E) -> R) throws(E) -> R {
        var waiter = state.withLock { $0 }
        defer { state.withLock { $0 = waiter } }
        return try body(&waiter)
    }

    /// The current spin budget in nanoseconds (tests).
    package var spinBudget: UInt64 { state.withLock { $0.spinBudget } }
}
