#if canImport(Glibc)
import Glibc
#endif
import CShm

/// `futex(2)` on a 32-bit word in shared memory (never `FUTEX_PRIVATE_FLAG`:
/// the waiter and the waker are usually different processes).
///
/// These are the raw operations; the primitives in `ShmPrimitives` build the
/// protocols (who announces sleeping, who wakes) on top.
@usableFromInline
package enum Futex {
    /// How a wait ended.
    @usableFromInline
    package enum WaitResult: Sendable, Equatable {
        /// Woken by `wake`, or returned spuriously: re-check the condition.
        case woken
        /// The word no longer held `expected` when the kernel looked (`EAGAIN`).
        case valueChanged
        /// The deadline passed (`ETIMEDOUT`).
        case timedOut
        /// A signal interrupted the wait (`EINTR`): re-check and wait again.
        case interrupted
    }

    /// `FUTEX_WAIT_BITSET` until `*word != expected`, a wake, or the absolute
    /// `CLOCK_MONOTONIC` deadline (`monotonicNanoseconds()` scale; nil waits
    /// for ever).
    @inlinable
    package static func wait(_ word: UnsafeMutableRawPointer, expected: UInt32, deadline: UInt64?) -> WaitResult {
        let address = word.assumingMemoryBound(to: UInt32.self)
        let rc: Int32
        if let deadline {
            var ts = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
            rc = cshm_futex_wait_until(address, expected, &ts)
        } else {
            rc = cshm_futex_wait_until(address, expected, nil)
        }
        if rc == 0 { return .woken }
        switch cshm_errno() {
        case EAGAIN: return .valueChanged
        case ETIMEDOUT: return .timedOut
        case EINTR: return .interrupted
        case let e:
            // EFAULT/EINVAL: the address is not a mapped, aligned word we own.
            preconditionFailure("futex wait failed: \(Errno(rawValue: e))")
        }
    }

    /// `FUTEX_WAKE`: wakes up to `count` waiters; returns how many woke.
    @inlinable @discardableResult
    package static func wake(_ word: UnsafeMutableRawPointer, count: Int32 = 1) -> Int {
        let rc = cshm_futex_wake(word.assumingMemoryBound(to: UInt32.self), count)
        precondition(rc >= 0, "futex wake failed: \(Errno.current)")
        return Int(rc)
    }

    /// Wakes every waiter.
    @inlinable @discardableResult
    package static func wakeAll(_ word: UnsafeMutableRawPointer) -> Int { wake(word, count: Int32.max) }

    /// How a `waitAny` ended.
    package enum WaitAnyResult: Sendable, Equatable {
        /// Woken (or spuriously returned), or a word no longer held its
        /// expected value: re-check the conditions.
        case woken
        /// The deadline passed (`ETIMEDOUT`).
        case timedOut
        /// A signal interrupted the wait (`EINTR`).
        case interrupted
        /// The kernel has no `futex_waitv` (before Linux 5.16, `ENOSYS`):
        /// the caller polls instead.
        case unsupported
    }

    /// The most words `waitAny` takes (the kernel's `FUTEX_WAITV_MAX`).
    package static let waitAnyLimit = 128

    /// `futex_waitv(2)`: sleeps until any of `words[i]` differs from
    /// `expected[i]`, a wake on any of them, or the absolute
    /// `CLOCK_MONOTONIC` deadline (nil: no deadline). 32-bit words, shared
    /// (not process-private) futexes; at most `waitAnyLimit` of them.
    package static func waitAny(_ words: [UnsafeMutableRawPointer], expected: [UInt32], deadline: UInt64?) -> WaitAnyResult {
        precondition(words.count == expected.count && !words.isEmpty && words.count <= waitAnyLimit,
                     "waitAny takes 1…\(waitAnyLimit) words, each with its expected value")
        var addresses = words.map { $0.assumingMemoryBound(to: UInt32.self) as UnsafeMutablePointer<UInt32>? }
        let rc: Int32 = addresses.withUnsafeMutableBufferPointer { w in
            expected.withUnsafeBufferPointer { e in
                if let deadline {
                    var ts = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
                    return cshm_futex_waitv(w.baseAddress, e.baseAddress, UInt32(w.count), &ts)
                }
                return cshm_futex_waitv(w.baseAddress, e.baseAddress, UInt32(w.count), nil)
            }
        }
        if rc >= 0 { return .woken }
        switch cshm_errno() {
        case EAGAIN: return .woken
        case ETIMEDOUT: return .timedOut
        case EINTR: return .interrupted
        case ENOSYS: return .unsupported
        case let e:
            // EFAULT/EINVAL: an address is not a mapped, aligned word.
            preconditionFailure("futex_waitv failed: \(Errno(rawValue: e))")
        }
    }
}

/// CPU placement and spin hints.
public enum CPU {
    /// Pins the calling thread to `cpu` (`sched_setaffinity(2)`).
    public static func pinCurrentThread(to cpu: Int) throws(Errno) {
        if cshm_pin_to_cpu(Int32(cpu)) != 0 { throw Errno.current }
    }

    /// CPUs this thread may run on (`sched_getaffinity(2)`).
    public static var allowedCount: Int { max(1, Int(cshm_allowed_cpu_count())) }

    /// Online CPUs (`sysconf(_SC_NPROCESSORS_ONLN)`).
    public static var onlineCount: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }

    /// The spin-loop hint (`PAUSE` on x86).
    @inlinable @inline(__always)
    public static func relax() { cshm_cpu_relax() }

    /// Fetches the cache line at `address` for writing (`PREFETCHW` on x86):
    /// takes another core's copy away before the write that needs it.
    @inlinable @inline(__always)
    public static func prefetchForWrite(_ address: UnsafeRawPointer) { cshm_prefetch_for_write(address) }

    /// Fetches the cache line at `address` for reading (`PREFETCHT0`),
    /// without waiting for it.
    @inlinable @inline(__always)
    public static func prefetchForRead(_ address: UnsafeRawPointer) { cshm_prefetch_for_read(address) }

    /// Gives the CPU to another runnable thread (`sched_yield(2)`).
    @inline(__always)
    public static func yield() { sched_yield() }
}
