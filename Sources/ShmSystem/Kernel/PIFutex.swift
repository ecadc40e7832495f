#if canImport(Glibc)
import Glibc
#endif
import CShm

/// Priority-inheritance futex operations on a lock word in shared memory
/// (`FUTEX_LOCK_PI`, `FUTEX_TRYLOCK_PI`, `FUTEX_UNLOCK_PI`, never
/// process-private). The word holds the owner's thread id (`ownerMask`)
/// and the kernel's `waitersBit`; the kernel queues waiters, hands the lock
/// over on unlock, and reports an owner thread that no longer exists.
/// `SharedMutex` builds the protocol on top.
package enum PIFutex {
    /// `FUTEX_TID_MASK`: the owner's thread id in the word.
    package static let ownerMask: UInt32 = cshm_futex_tid_mask()
    /// `FUTEX_WAITERS`: the kernel has waiters queued on the word.
    package static let waitersBit: UInt32 = cshm_futex_waiters_bit()

    /// The calling thread's id (`gettid(2)`), the value a PI word holds.
    @inlinable
    package static var currentThreadID: UInt32 { UInt32(bitPattern: cshm_thread_id()) }

    /// How `lock` ended.
    package enum LockResult: Sendable, Equatable {
        /// The kernel wrote our thread id into the word.
        case acquired
        /// The deadline passed.
        case timedOut
        /// A signal or a changing word: try again.
        case retry
        /// This thread owns the word already (`EDEADLK`).
        case wouldDeadlock
        /// The word names a thread that does not exist and nobody waits
        /// (`ESRCH`): the caller decides whether to take it over.
        case ownerGone
        /// Any other error.
        case failed(Errno)
    }

    /// `FUTEX_LOCK_PI` until acquired or the absolute `CLOCK_REALTIME`
    /// deadline (`wallClockNanoseconds()` scale; nil: no deadline).
    package static func lock(_ word: UnsafeMutableRawPointer, deadline: UInt64?) -> LockResult {
        let address = word.assumingMemoryBound(to: UInt32.self)
        let rc: Int32
        if let deadline {
            var ts = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
            rc = cshm_futex_lock_pi(address, &ts)
        } else {
            rc = cshm_futex_lock_pi(address, nil)
        }
        if rc == 0 { return .acquired }
        switch cshm_errno() {
        case EINTR, EAGAIN: return .retry
        case ETIMEDOUT: return .timedOut
        case EDEADLK: return .wouldDeadlock
        case ESRCH: return .ownerGone
        case let e: return .failed(Errno(rawValue: e))
        }
    }

    /// How `tryLock` ended.
    package enum TryLockResult: Sendable, Equatable {
        case acquired, busy, ownerGone
    }

    /// `FUTEX_TRYLOCK_PI`: takes the word if it is free, or if its owner
    /// died and the kernel can tell (robust-list hand-over).
    package static func tryLock(_ word: UnsafeMutableRawPointer) -> TryLockResult {
        if cshm_futex_trylock_pi(word.assumingMemoryBound(to: UInt32.self)) == 0 { return .acquired }
        return cshm_errno() == ESRCH ? .ownerGone : .busy
    }

    /// `FUTEX_UNLOCK_PI`: hands the word to the highest-priority waiter.
    package static func unlock(_ word: UnsafeMutableRawPointer) throws(Errno) {
        if cshm_futex_unlock_pi(word.assumingMemoryBound(to: UInt32.self)) != 0 { throw Errno.current }
    }

    /// Whether a thread (or process) with this id exists in our pid
    /// namespace and may be signalled by us (`kill(id, 0) == 0`).
    package static func threadExists(_ id: UInt32) -> Bool {
        kill(pid_t(bitPattern: id), 0) == 0
    }
}
