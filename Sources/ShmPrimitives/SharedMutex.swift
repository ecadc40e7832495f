import Synchronization
import ShmSystem

/// A mutex in shared memory that survives the death of its holder.
///
/// ```text
/// offset 0   header: magic "RMTX", version, checksum   (24 bytes)
/// offset 64  word     UInt32  0 free, else owner TID | FUTEX_WAITERS
/// offset 68  holder   UInt32  pid of the holding process, 0 between holders
/// offset 72  holderID UInt64  packed ProcessIdentity of the holder (its lease)
/// offset 80  deaths   UInt64  times a holder died holding it
/// offset 88  firstNS  UInt64  pid namespace (inode) of the first process to use it
/// offset 96  mixed    UInt32  1 once processes of two pid namespaces used it
/// ```
///
/// The lock word follows the kernel's priority-inheritance futex protocol
/// (`FUTEX_LOCK_PI` / `FUTEX_UNLOCK_PI`): uncontended lock and unlock are
/// one compare-and-swap in user space; a contended locker sleeps in the
/// kernel, which boosts the holder's priority and hands the lock over.
///
/// **Owner death.** The kernel resolves a dead holder: a waiter already
/// asleep gets the lock when the holder exits, and a new locker finds the
/// dead TID (`ESRCH`) and takes the word over. Either way the new owner
/// finds `holder` still set — the dead process set it after locking and
/// would have cleared it before unlocking — and `lock` returns
/// `.ownerDied(pid:)`: you hold the lock, and the state it protects may be
/// half-updated. A holder that dies in the instants between taking the word
/// and setting `holder` (or between clearing it and releasing the word) had
/// not touched the protected state, and the next lock is plain `.acquired`.
///
/// **Across pid namespaces** (containers sharing /dev/shm) the TID in the
/// word means nothing to the kernel of another namespace: it would look it
/// up in the caller's namespace and attach to an unrelated thread. So the
/// first process to attach records its pid namespace (`firstNS`), and one
/// from another namespace marks the mutex `mixed` for good. A mixed mutex
/// never enters the kernel's PI protocol: lockers poll the word with
/// growing sleeps (20 µs … 2 ms; no priority inheritance) and prove a
/// holder dead by its lease (`ProcessIdentity.liveness`), then take the
/// word over (`.ownerDied`). Left: a locker that was already asleep in
/// `FUTEX_LOCK_PI` when the mutex turned mixed finishes that wait under the
/// kernel's rules.
///
/// The owner is a *thread*: unlock from the thread that locked, and do not
/// hold the mutex across an `await`.
public final class SharedMutex: @unchecked Sendable {
    static let magic = SegmentKind("RMTX")
    static let version: UInt32 = 2
    static let wordOffset = 64, holderOffset = 68, holderIDOffset = 72, deathsOffset = 80
    static let firstNamespaceOffset = 88, mixedOffset = 96
    /// Bytes a mutex occupies.
    public static let size = 128

    public let region: MappedBytes
    /// Whatever owns the memory (a segment), kept alive as long as this is.
    package let anchor: AnyObject?
    let word: UnsafeMutablePointer<Atomic<UInt32>>
    let holder: UnsafeMutablePointer<Atomic<UInt32>>
    let holderID: UnsafeMutablePointer<Atomic<UInt64>>
    let deaths: UnsafeMutablePointer<Atomic<UInt64>>
    /// Set once processes of two pid namespaces used the mutex.
    let mixed: UnsafeMutablePointer<Atomic<UInt32>>

    /// How a lock was obtained.
    public enum Acquisition: Equatable, Sendable {
        /// The mutex was free or released normally.
        case acquired
        /// The previous holder (this pid) died holding it: you hold the lock
        /// now, and the state it protects may be inconsistent.
        case ownerDied(pid: Int32)
    }

    /// Lays out a new, unlocked mutex at the start of `region`.
    public static func initialize(_ region: MappedBytes, anchor: AnyObject? = nil) throws(SyncError) -> SharedMutex {
        guard region.count >= size else { throw .regionTooSmall(needed: size, available: region.count) }
        region.view(0..<size).fill(with: 0)
        LayoutHeader.write(region.unsafeBaseAddress, magic: magic, version: version, fields: [])
        return try SharedMutex(attaching: region, anchor: anchor)
    }

    /// Attaches to a mutex laid out by another process.
    public init(attaching region: MappedBytes, anchor: AnyObject? = nil) throws(SyncError) {
        do {
            _ = try LayoutHeader.read(region, magic: SharedMutex.magic, version: SharedMutex.version, count: 0, what: "robust mutex")
        } catch { throw error.asSyncError }
        guard region.count >= SharedMutex.size else { throw .regionTooSmall(needed: SharedMutex.size, available: region.count) }
        let base = region.unsafeBaseAddress
        precondition(Int(bitPattern: base) % 8 == 0, "mutex must be 8-byte aligned")
        self.region = region
        self.anchor = anchor
        word = UnsafeMutablePointer(OpaquePointer(base + SharedMutex.wordOffset))
        holder = UnsafeMutablePointer(OpaquePointer(base + SharedMutex.holderOffset))
        holderID = UnsafeMutablePointer(OpaquePointer(base + SharedMutex.holderIDOffset))
        deaths = UnsafeMutablePointer(OpaquePointer(base + SharedMutex.deathsOffset))
        mixed = UnsafeMutablePointer(OpaquePointer(base + SharedMutex.mixedOffset))
        let firstNamespace = UnsafeMutablePointer<Atomic<UInt64>>(OpaquePointer(base + SharedMutex.firstNamespaceOffset))
        let ours = ProcessIdentity.currentPIDNamespace
        // SYNC POINT: seq_cst CAS pairs with the other attachers' CAS: the first
        // pid namespace is recorded once, and every later attacher compares with it.
        let (_, first) = firstNamespace.pointee.compareExchange(expected: 0, desired: ours, ordering: .sequentiallyConsistent)
        if ours == 0 || (first != 0 && first != ours) {
            // SYNC POINT: seq_cst store pairs with the seq_cst loads in
            // `usesKernelPI`: from now on no locker hands a TID to the kernel.
            mixed.pointee.store(1, ordering: .sequentiallyConsistent)
        }
    }

    /// True while every user of the mutex shares one pid namespace, so the
    /// TID in the word means the same to the kernel for all of them.
    private var usesKernelPI: Bool {
        // SYNC POINT: seq_cst load pairs with the seq_cst store of `mixed` in `init(attaching:)`.
        mixed.pointee.load(ordering: .sequentiallyConsistent) == 0
    }

    static let tidMask = PIFutex.ownerMask
    static let waitersBit = PIFutex.waitersBit

    /// Locks, waiting at most `timeout` (nil: for ever).
    ///
    /// - Returns: `.acquired`, or `.ownerDied(pid:)` if the previous holder
    ///   died holding the lock (you hold it either way).
    /// - Throws: `.timedOut`, `.wouldDeadlock` (this thread holds it already).
    public func lock(timeout: Duration? = nil) throws(SyncError) -> Acquisition {
        let me = PIFutex.currentThreadID
        // Fast path, and a short spin for a holder that is about to unlock.
        for _ in 0..<64 {
            // SYNC POINT: acquire pairs with the release CAS in `unlock`
            // (and with the kernel's hand-over in FUTEX_UNLOCK_PI).
            if word.pointee.compareExchange(expected: 0, desired: me, ordering: .acquiring).exchanged {
                return takeOwnership()
            }
            let current = word.pointee.load(ordering: .relaxed)
            if current & SharedMutex.tidMask == me && (usesKernelPI || holderID.pointee.load(ordering: .relaxed) == ProcessIdentity.current.packed) {
                throw .wouldDeadlock
            }
            CPU.relax()
        }
        let deadlineRealtime: UInt64? = timeout.map { wallClockNanoseconds() &+ $0.nanoseconds }
        var pause: UInt64 = 20_000
        while true {
            if !usesKernelPI {
                // Users in two pid namespaces: the kernel cannot resolve a
                // TID from the other one. Poll, and prove death by lease.
                if let acquisition = takeFreeOrAbandonedWord(me) { return acquisition }
                if let deadlineRealtime, wallClockNanoseconds() >= deadlineRealtime {
                    throw .timedOut(after: timeout)
                }
                sleepNanoseconds(pause)
                pause = min(pause * 2, 2_000_000)
                continue
            }
            switch PIFutex.lock(UnsafeMutableRawPointer(word), deadline: deadlineRealtime) {
            case .acquired:
                // The kernel wrote our TID into the word (possibly after the
                // previous holder died while we slept).
                // SYNC POINT: the kernel's hand-over orders the previous
                // holder's writes before our return; this acquire fence
                // makes that explicit for the holder fields.
                atomicMemoryFence(ordering: .acquiring)
                return takeOwnership()
            case .retry:
                continue
            case .timedOut:
                throw .timedOut(after: timeout)
            case .wouldDeadlock:
                throw .wouldDeadlock
            case .ownerGone:
                // The TID in the word belongs to no living thread and the
                // kernel had no waiter to hand the lock to: take it over
                // (unless the mutex turned mixed meanwhile: then poll).
                if !usesKernelPI { continue }
                // SYNC POINT: acquire pairs with the dead holder's last store to the word.
                let observed = word.pointee.load(ordering: .acquiring)
                let owner = observed & SharedMutex.tidMask
                if owner == 0 { continue }
                if !holderProvenGone(tid: owner) { continue } // alive again (a reused TID): retry in the kernel
                // SYNC POINT: acquire pairs with the dead holder's last
                // release (if it got that far); its writes are what they are.
                if word.pointee.compareExchange(expected: observed, desired: me | (observed & SharedMutex.waitersBit),
                                                ordering: .acquiring).exchanged {
                    return takeOwnership()
                }
            case .failed(let e):
                throw .system(operation: "FUTEX_LOCK_PI", errno: e.rawValue)
            }
        }
    }

    /// Locks if the mutex is free right now; nil if it is held.
    public func tryLock() throws(SyncError) -> Acquisition? {
        let me = PIFutex.currentThreadID
        // SYNC POINT: acquire pairs with the release CAS in `unlock`.
        if word.pointee.compareExchange(expected: 0, desired: me, ordering: .acquiring).exchanged {
            return takeOwnership()
        }
        guard usesKernelPI else { return takeFreeOrAbandonedWord(me) }
        if word.pointee.load(ordering: .relaxed) & SharedMutex.tidMask == me { throw .wouldDeadlock }
        // FUTEX_TRYLOCK_PI resolves a dead owner in the kernel.
        let attempt = PIFutex.tryLock(UnsafeMutableRawPointer(word))
        if attempt == .acquired {
            // SYNC POINT: as in `lock`: the kernel's hand-over, made explicit for the holder fields.
            atomicMemoryFence(ordering: .acquiring)
            return takeOwnership()
        }
        if attempt == .ownerGone {
            // SYNC POINT: acquire (and the acquire CAS below) pair with the dead holder's
            // last release, if it got that far, as in `lock`.
            let observed = word.pointee.load(ordering: .acquiring)
            let owner = observed & SharedMutex.tidMask
            if owner != 0, holderProvenGone(tid: owner),
               word.pointee.compareExchange(expected: observed, desired: me | (observed & SharedMutex.waitersBit),
                                            ordering: .acquiring).exchanged {
                return takeOwnership()
            }
        }
        return nil
    }

    /// After the kernel found no thread with the word's TID: the holder is
    /// gone if its lease says so (`holderID`), or — when it died before
    /// writing its identity — if no thread has that TID now.
    private func holderProvenGone(tid: UInt32) -> Bool {
        // SYNC POINT: acquire pairs with the release store of holderID in `takeOwnership`.
        let recorded = holderID.pointee.load(ordering: .acquiring)
        if recorded != 0 { return ProcessIdentity(packed: recorded).liveness == .dead }
        return !PIFutex.threadExists(tid)
    }

    /// Takes the word if it is free, or if its holder is proven dead by its
    /// lease (from any pid namespace); nil otherwise.
    private func takeFreeOrAbandonedWord(_ me: UInt32) -> Acquisition? {
        // SYNC POINT: acquire pairs with the release CAS in `unlock`.
        if word.pointee.compareExchange(expected: 0, desired: me, ordering: .acquiring).exchanged { return takeOwnership() }
        let observed = word.pointee.load(ordering: .acquiring)
        let recorded = holderID.pointee.load(ordering: .acquiring)
        // No identity yet: the holder is between taking the word and
        // writing its fields (or died there). Wait for it.
        guard observed != 0, recorded != 0, ProcessIdentity(packed: recorded).liveness == .dead else { return nil }
        // SYNC POINT: acquire pairs with the dead holder's last release.
        guard word.pointee.compareExchange(expected: observed, desired: me | (observed & SharedMutex.waitersBit),
                                           ordering: .acquiring).exchanged else { return nil }
        return takeOwnership()
    }

    /// Called with the word held: records us as holder and reports whether
    /// the previous holder died holding it.
    private func takeOwnership() -> Acquisition {
        let previous = holder.pointee.load(ordering: .relaxed)
        holder.pointee.store(UInt32(bitPattern: ProcessIdentity.current.pid), ordering: .relaxed)
        // SYNC POINT: release pairs with the acquire load in
        // `takeFreeOrAbandonedWord`: a locker that sees our identity tests our lease.
        holderID.pointee.store(ProcessIdentity.current.packed, ordering: .releasing)
        if previous != 0 {
            deaths.pointee.wrappingAdd(1, ordering: .relaxed)
            return .ownerDied(pid: Int32(bitPattern: previous))
        }
        return .acquired
    }

    /// Unlocks. Must be called by the thread that locked.
    public func unlock() throws(SyncError) {
        let me = PIFutex.currentThreadID
        let current = word.pointee.load(ordering: .relaxed)
        guard current & SharedMutex.tidMask == me else { throw .notOwner(holderTID: current & SharedMutex.tidMask) }
        holder.pointee.store(0, ordering: .relaxed)
        holderID.pointee.store(0, ordering: .relaxed)
        // SYNC POINT: release pairs with the acquire CAS in `lock`/`tryLock`:
        // everything written under the lock (and the cleared holder fields)
        // is visible to the next owner.
        if word.pointee.compareExchange(expected: me, desired: 0, ordering: .releasing).exchanged { return }
        // Waiters are queued in the kernel: let it hand the lock over.
        do { try PIFutex.unlock(UnsafeMutableRawPointer(word)) } catch {
            throw .system(operation: "FUTEX_UNLOCK_PI", errno: error.rawValue)
        }
    }

    /// Runs `body` under the lock. `onOwnerDied` runs first (under the lock)
    /// if the previous holder died holding it, to repair the protected state.
    /// Throws the `SyncError` of taking the lock, or whatever `body` throws.
    public func withLock<R>(
        timeout: Duration? = nil, onOwnerDied: (Int32) throws -> Void = { _ in },
        _ body: () throws -> R
    ) throws -> R {
        let acquisition = try lock(timeout: timeout)
        defer { try? unlock() }
        if case .ownerDied(let pid) = acquisition { try onOwnerDied(pid) }
        return try body()
    }

    /// The process holding the mutex now, if any (diagnostics).
    public var holderProcess: ProcessIdentity? {
        let packed = holderID.pointee.load(ordering: .relaxed)
        return packed == 0 ? nil : ProcessIdentity(packed: packed)
    }

    /// How many times a holder died holding this mutex.
    public var ownerDeaths: UInt64 { deaths.pointee.load(ordering: .relaxed) }
}
