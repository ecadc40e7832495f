import Synchronization
import ShmSystem

/// A process-local "stop" flag that idle threads sleep on (a futex word in
/// memory this object owns): `stop()` wakes every sleeper at once.
package final class StopSignal: @unchecked Sendable {
    private let word = UnsafeMutablePointer<Atomic<UInt32>>.allocate(capacity: 1)

    package init() { word.initialize(to: Atomic(0)) }
    deinit { word.deallocate() }

    package var isStopping: Bool {
        // SYNC POINT: acquire pairs with the release store in `stop()`.
        word.pointee.load(ordering: .acquiring) != 0
    }

    package func stop() {
        // SYNC POINT: release pairs with the acquire load in `isStopping`.
        word.pointee.store(1, ordering: .releasing)
        Futex.wakeAll(UnsafeMutableRawPointer(word))
    }

    /// Sleeps until `stop()` or the monotonic `deadline`.
    package func sleep(until deadline: UInt64) {
        _ = Futex.wait(UnsafeMutableRawPointer(word), expected: 0, deadline: deadline)
    }
}

/// How many worker threads are still running, and a way to wait until none is.
package final class RunningThreads: @unchecked Sendable {
    private let word = UnsafeMutablePointer<Atomic<UInt32>>.allocate(capacity: 1)

    package init() { word.initialize(to: Atomic(0)) }
    deinit { word.deallocate() }

    /// Before starting a thread.
    package func starting() { word.pointee.wrappingAdd(1, ordering: .relaxed) }

    /// The thread's last act.
    package func finished() {
        // SYNC POINT: release pairs with the acquire load in `waitUntilNoneRuns`
        // (everything the thread did happens before the waiter goes on).
        word.pointee.wrappingSubtract(1, ordering: .releasing)
        Futex.wakeAll(UnsafeMutableRawPointer(word))
    }

    /// Waits (in 100 ms slices) until every started thread finished.
    package func waitUntilNoneRuns() {
        // SYNC POINT: acquire pairs with the release decrements in `finished`.
        while case let left = word.pointee.load(ordering: .acquiring), left != 0 {
            _ = Futex.wait(UnsafeMutableRawPointer(word), expected: left, deadline: monotonicNanoseconds() &+ 100_000_000)
        }
    }
}
