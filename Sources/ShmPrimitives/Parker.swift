import Synchronization
import ShmSystem

/// Where waiters sleep and how wakers find out that anyone does: two 32-bit
/// words in shared memory.
///
/// ```text
/// offset 0  seq       futex word; a waker bumps it before FUTEX_WAKE
/// offset 4  sleepers  how many waiters announced they are about to sleep
/// ```
///
/// The protocol is Dekker's: the waiter increments `sleepers`, then
/// re-checks its condition; the waker makes the condition true, then reads
/// `sleepers`. All four accesses are sequentially consistent, so at least
/// one side sees the other: either the waiter sees the condition and does
/// not sleep, or the waker sees a sleeper and wakes it. A waker that sees
/// no sleeper makes no syscall.
///
/// A waiter killed while asleep leaves `sleepers` one too high; that costs
/// the waker needless `FUTEX_WAKE` calls, never a lost wake-up. Structures
/// with a single waiter reset it when a new waiter attaches.
@usableFromInline
package struct Parker: @unchecked Sendable {
    @usableFromInline package let seq: UnsafeMutablePointer<Atomic<UInt32>>
    @usableFromInline package let sleepers: UnsafeMutablePointer<Atomic<UInt32>>

    /// The parker at `address` (8 bytes, 4-byte aligned, inside a mapping
    /// the caller keeps alive).
    package init(_ address: UnsafeMutableRawPointer) {
        seq = UnsafeMutablePointer(OpaquePointer(address + Parker.Offset.seq))
        sleepers = UnsafeMutablePointer(OpaquePointer(address + Parker.Offset.sleepers))
    }

    /// Byte offsets of the two words (the table above).
    package enum Offset {
        package static let seq = 0, sleepers = 4
    }

    package static let size = 8

    /// Announces a sleeper, re-checks `ready()` (which must use a sequentially
    /// consistent load), and sleeps until woken or `deadline`. Returns true
    /// if `ready()` held on the re-check.
    @inlinable @inline(__always)
    package func sleep(until deadline: UInt64, ready: () -> Bool) -> Bool {
        // SYNC POINT: acquire pairs with the release bump of `seq` in `wake`.
        let observed = seq.pointee.load(ordering: .acquiring)
        // SYNC POINT (Dekker): this seq_cst increment and the seq_cst load in
        // `ready()` pair with the waker's seq_cst publish and its seq_cst
        // load of `sleepers` in `wakeIfSleeping`.
        sleepers.pointee.wrappingAdd(1, ordering: .sequentiallyConsistent)
        defer { sleepers.pointee.wrappingSubtract(1, ordering: .relaxed) }
        if ready() { return true }
        _ = Futex.wait(UnsafeMutableRawPointer(seq), expected: observed, deadline: deadline)
        return false
    }

    /// Wakes up to `count` sleepers if any announced themselves. Call after
    /// the sequentially consistent store that made the condition true.
    @inlinable @inline(__always)
    package func wakeIfSleeping(count: Int32 = 1) {
        // SYNC POINT (Dekker): pairs with the seq_cst increment in `sleep`.
        if sleepers.pointee.load(ordering: .sequentiallyConsistent) != 0 {
            wake(count: count)
        }
    }

    @usableFromInline @inline(never)
    package func wake(count: Int32) {
        // SYNC POINT: release pairs with the acquire load of `seq` in `sleep`.
        seq.pointee.wrappingAdd(1, ordering: .releasing)
        Futex.wake(UnsafeMutableRawPointer(seq), count: count)
    }

    /// Forgets sleepers that can no longer exist (a new sole waiter attaching).
    package func resetSleepers() {
        sleepers.pointee.store(0, ordering: .relaxed)
    }

    package var sleeperCount: UInt32 { sleepers.pointee.load(ordering: .relaxed) }
}
