#if canImport(Glibc)
import Glibc
#endif

/// Dedicated OS threads for blocking waits (futex sleeps) made on behalf of
/// `async` callers, so that waiting for shared memory never occupies a thread
/// of Swift's cooperative pool (which has only as many threads as cores).
///
/// Each job gets a thread of its own for as long as it runs: a thread asleep
/// in `futex(2)` can serve only one waiter. Idle threads are kept for reuse
/// and exit after `idleLifetime`.
package final class BlockingPool: @unchecked Sendable {
    package static let shared = BlockingPool()

    /// How long an idle thread waits for new work before exiting.
    package let idleLifetime: Duration = .seconds(10)

    private struct State {
        var jobs: [@Sendable () -> Void] = []
        var idle = 0
        var threads = 0
    }

    /// Guarded by `lock`.
    private var state = State()
    private let lock: UnsafeMutablePointer<pthread_mutex_t>
    private let wakeup: UnsafeMutablePointer<pthread_cond_t>

    private init() {
        lock = .allocate(capacity: 1)
        pthread_mutex_init(lock, nil)
        wakeup = .allocate(capacity: 1)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(wakeup, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    /// Number of threads the pool has now (for tests and diagnostics).
    package var threadCount: Int {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        return state.threads
    }

    /// Runs `job` on a pool thread and returns its result to the awaiting task.
    package func run<T: Sendable, E: Error>(_ job: @escaping @Sendable () throws(E) -> T) async throws(E) -> T {
        let result: Result<T, E> = await withCheckedContinuation { continuation in
            submit {
                continuation.resume(returning: Result { () throws(E) -> T in try job() })
            }
        }
        return try result.get()
    }

    package func submit(_ job: @escaping @Sendable () -> Void) {
        pthread_mutex_lock(lock)
        state.jobs.append(job)
        // Every queued job needs a thread of its own: an idle thread that has
        // not yet woken up to take an earlier job does not count twice.
        let spawn = state.jobs.count > state.idle
        if spawn { state.threads += 1 }
        pthread_cond_signal(wakeup)
        pthread_mutex_unlock(lock)
        if spawn { startThread() }
    }

    private func startThread() {
        var thread = pthread_t()
        let context = Unmanaged.passRetained(self).toOpaque()
        let rc = pthread_create(&thread, nil, { argument in
            let pool = Unmanaged<BlockingPool>.fromOpaque(argument!).takeRetainedValue()
            pool.workLoop()
            return nil
        }, context)
        precondition(rc == 0, "pthread_create failed: \(Errno(rawValue: rc))")
        pthread_detach(thread)
    }

    private func workLoop() {
        pthread_mutex_lock(lock)
        while true {
            if !state.jobs.isEmpty {
                let job = state.jobs.removeFirst()
                pthread_mutex_unlock(lock)
                job()
                pthread_mutex_lock(lock)
                continue
            }
            state.idle += 1
            let deadline = monotonicNanoseconds() &+ idleLifetime.nanoseconds
            var ts = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
            let rc = pthread_cond_timedwait(wakeup, lock, &ts)
            state.idle -= 1
            if rc == ETIMEDOUT && state.jobs.isEmpty {
                state.threads -= 1
                break
            }
        }
        pthread_mutex_unlock(lock)
    }
}
