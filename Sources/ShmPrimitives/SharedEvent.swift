import Synchronization
import ShmSystem

/// An event (notification word) in shared memory: waiters sleep until it is
/// signalled; a signal wakes one or all of them.
///
/// ```text
/// offset 0   header: magic "EVNT", version, checksum   (24 bytes)
/// offset 64  sequence  UInt32  futex word, +1 per signal
/// offset 68  sleepers  UInt32
/// ```
///
/// A waiter takes a snapshot of `sequence`, checks whatever condition it
/// cares about, and waits until the sequence moves on from the snapshot, so
/// a signal between the check and the wait is never lost.
public final class SharedEvent: @unchecked Sendable {
    static let magic = SegmentKind("EVNT")
    static let version: UInt32 = 1
    static let parkerOffset = 64
    /// Bytes an event occupies.
    public static let size = 128

    public let region: MappedBytes
    /// Whatever owns the memory (a segment), kept alive as long as this is.
    package let anchor: AnyObject?
    package let parker: Parker
    /// The handle's waiter: `wait` uses its strategy and adapts its spin
    /// budget (`HandleWaiter`).
    package let waiter: HandleWaiter

    /// How waits through this handle wait, set when attaching.
    public var waitStrategy: WaitStrategy { waiter.strategy }

    /// Lays out a new event at the start of `region`.
    public static func initialize(_ region: MappedBytes, anchor: AnyObject? = nil,
                                  waitStrategy: WaitStrategy = .default) throws(SyncError) -> SharedEvent {
        guard region.count >= size else { throw .regionTooSmall(needed: size, available: region.count) }
        region.view(0..<size).fill(with: 0)
        LayoutHeader.write(region.unsafeBaseAddress, magic: magic, version: version, fields: [])
        return try SharedEvent(attaching: region, anchor: anchor, waitStrategy: waitStrategy)
    }

    /// Attaches to an event laid out by another process; `wait` through this
    /// handle uses `waitStrategy`.
    public init(attaching region: MappedBytes, anchor: AnyObject? = nil, waitStrategy: WaitStrategy = .default) throws(SyncError) {
        do {
            _ = try LayoutHeader.read(region, magic: SharedEvent.magic, version: SharedEvent.version, count: 0, what: "event")
        } catch { throw error.asSyncError }
        guard region.count >= SharedEvent.size else { throw .regionTooSmall(needed: SharedEvent.size, available: region.count) }
        self.region = region
        self.anchor = anchor
        self.waiter = HandleWaiter(waitStrategy)
        parker = Parker(region.unsafeBaseAddress + SharedEvent.parkerOffset)
    }

    /// The current sequence number: pass it to `wait(after:)`.
    public var sequence: UInt32 {
        // SYNC POINT: acquire pairs with the seq_cst increment in `signal`:
        // whatever the signaller wrote before signalling is visible.
        parker.seq.pointee.load(ordering: .acquiring)
    }

    /// Signals the event, waking one waiter (`all: false`) or every waiter.
    /// Makes no syscall when nobody sleeps.
    public func signal(all: Bool = true) {
        // SYNC POINT: seq_cst increment pairs with the acquire load in
        // `sequence` and, for the Dekker handshake, with `Parker.sleep`.
        parker.seq.pointee.wrappingAdd(1, ordering: .sequentiallyConsistent)
        if parker.sleepers.pointee.load(ordering: .sequentiallyConsistent) != 0 {
            Futex.wake(UnsafeMutableRawPointer(parker.seq), count: all ? .max : 1)
        }
    }

    /// Waits until the sequence differs from `seen`, at most `timeout` (nil:
    /// for ever), with the handle's wait strategy (`FUTEX_WAIT` on the
    /// sequence word when it parks).
    /// - Returns: the new sequence, or nil if the timeout passed.
    public func wait(after seen: UInt32, timeout: Duration? = nil) -> UInt32? {
        // SYNC POINT: seq_cst load pairs with the seq_cst increment in `signal`.
        if parker.seq.pointee.load(ordering: .sequentiallyConsistent) != seen { return sequence }
        return waiter.withWaiter { (waiter: inout Waiter) in wait(after: seen, timeout: timeout, waiter: &waiter) }
    }

    @available(*, deprecated, message: "the wait strategy is set per handle: SharedEvent.create/open/init(…, waitStrategy:)")
    public func wait(after seen: UInt32, timeout: Duration? = nil, strategy: WaitStrategy) -> UInt32? {
        var waiter = Waiter(strategy)
        return wait(after: seen, timeout: timeout, waiter: &waiter)
    }

    /// `wait(after:)` with a caller's `Waiter`, whose spin budget adapts
    /// across calls (a listener keeps one for its life).
    package func wait(after seen: UInt32, timeout: Duration?, waiter: inout Waiter) -> UInt32? {
        let parker = self.parker
        let changed = waiter.wait(on: parker, deadline: deadline(after: timeout)) {
            // SYNC POINT (Dekker): seq_cst load pairs with `signal`'s increment and
            // its sleeper check (`Parker`).
            parker.seq.pointee.load(ordering: .sequentiallyConsistent) != seen
        }
        return changed ? sequence : nil
    }

    /// Waiters currently asleep (diagnostics).
    public var sleepingWaiters: UInt32 { parker.sleeperCount }
}
