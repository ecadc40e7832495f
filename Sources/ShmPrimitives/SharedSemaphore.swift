import Synchronization
import ShmSystem

/// A counting semaphore in shared memory.
///
/// ```text
/// offset 0   header: magic "SEMA", version, checksum   (24 bytes)
/// offset 64  count     UInt32  futex word
/// offset 68  sleepers  UInt32  waiters that announced they sleep
/// ```
///
/// `post` never makes a syscall unless a waiter announced it sleeps; `wait`
/// spins or parks according to its `WaitStrategy`. A waiter killed while
/// parked leaves `sleepers` high, which costs later posts a needless
/// `FUTEX_WAKE`, never a lost wake-up or a hang.
public final class SharedSemaphore: @unchecked Sendable {
    static let magic = SegmentKind("SEMA")
    static let version: UInt32 = 1
    static let parkerOffset = 64
    /// Bytes a semaphore occupies.
    public static let size = 128

    public let region: MappedBytes
    /// Whatever owns the memory (a segment), kept alive as long as this is.
    package let anchor: AnyObject?
    let count: UnsafeMutablePointer<Atomic<UInt32>>
    let parker: Parker
    /// The handle's waiter: `wait` uses its strategy and adapts its spin
    /// budget (`HandleWaiter`).
    package let waiter: HandleWaiter

    /// How waits through this handle wait, set when attaching.
    public var waitStrategy: WaitStrategy { waiter.strategy }

    /// Lays out a semaphore holding `initialValue` at the start of `region`.
    public static func initialize(_ region: MappedBytes, initialValue: UInt32 = 0, anchor: AnyObject? = nil,
                                  waitStrategy: WaitStrategy = .default) throws(SyncError) -> SharedSemaphore {
        guard region.count >= size else { throw .regionTooSmall(needed: size, available: region.count) }
        region.view(0..<size).fill(with: 0)
        LayoutHeader.write(region.unsafeBaseAddress, magic: magic, version: version, fields: [])
        let semaphore = try SharedSemaphore(attaching: region, anchor: anchor, waitStrategy: waitStrategy)
        // SYNC POINT: release pairs with the acquire CAS in `tryWait` of the first
        // waiter (the segment's publication orders it for other processes too).
        semaphore.count.pointee.store(initialValue, ordering: .releasing)
        return semaphore
    }

    /// Attaches to a semaphore laid out by another process; `wait` through
    /// this handle uses `waitStrategy`.
    public init(attaching region: MappedBytes, anchor: AnyObject? = nil, waitStrategy: WaitStrategy = .default) throws(SyncError) {
        do {
            _ = try LayoutHeader.read(region, magic: SharedSemaphore.magic, version: SharedSemaphore.version, count: 0, what: "semaphore")
        } catch { throw error.asSyncError }
        guard region.count >= SharedSemaphore.size else { throw .regionTooSmall(needed: SharedSemaphore.size, available: region.count) }
        self.region = region
        self.anchor = anchor
        self.waiter = HandleWaiter(waitStrategy)
        let base = region.unsafeBaseAddress + SharedSemaphore.parkerOffset
        count = UnsafeMutablePointer(OpaquePointer(base))
        parker = Parker(base) // the parker's seq word *is* the count
    }

    /// The current count (a snapshot).
    public var value: UInt32 { count.pointee.load(ordering: .relaxed) }

    /// Adds `n` to the count and wakes up to `n` sleeping waiters.
    public func post(_ n: UInt32 = 1) {
        // SYNC POINT: release (seq_cst) pairs with the acquire CAS in
        // `tryWait`; seq_cst so the load of sleepers below cannot pass it.
        count.pointee.wrappingAdd(n, ordering: .sequentiallyConsistent)
        if parker.sleepers.pointee.load(ordering: .sequentiallyConsistent) != 0 {
            Futex.wake(UnsafeMutableRawPointer(count), count: Int32(clamping: n))
        }
    }

    /// Takes one unit if the count is positive; false otherwise.
    public func tryWait() -> Bool {
        var current = count.pointee.load(ordering: .relaxed)
        while current > 0 {
            // SYNC POINT: acquire pairs with the seq_cst add in `post`.
            let (done, original) = count.pointee.compareExchange(expected: current, desired: current - 1, ordering: .acquiring)
            if done { return true }
            current = original
        }
        return false
    }

    /// Takes one unit, waiting at most `timeout` (nil: for ever) with the
    /// handle's wait strategy (`FUTEX_WAIT` on the count word when it parks).
    /// - Returns: false if the timeout passed first.
    public func wait(timeout: Duration? = nil) -> Bool {
        if tryWait() { return true }
        return waiter.withWaiter { (waiter: inout Waiter) in wait(timeout: timeout, waiter: &waiter) }
    }

    @available(*, deprecated, message: "the wait strategy is set per handle: SharedSemaphore.create/open/init(…, waitStrategy:)")
    public func wait(timeout: Duration? = nil, strategy: WaitStrategy) -> Bool {
        var waiter = Waiter(strategy)
        return wait(timeout: timeout, waiter: &waiter)
    }

    /// `wait(timeout:)` with a caller's `Waiter`.
    package func wait(timeout: Duration?, waiter: inout Waiter) -> Bool {
        let end = deadline(after: timeout)
        while true {
            if tryWait() { return true }
            if let end, monotonicNanoseconds() >= end { return false }
            // Sleep on the count word while it is 0 (the parker's seq is the count).
            let ready = waiter.wait(on: parker, deadline: end) {
                // SYNC POINT (Dekker): seq_cst load pairs with `post`'s seq_cst add and
                // its sleeper check (`Parker`).
                self.count.pointee.load(ordering: .sequentiallyConsistent) != 0
            }
            if !ready && !tryWait() { return false }
            if ready && tryWait() { return true }
        }
    }
}
