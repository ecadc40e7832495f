import Synchronization
import ShmSystem

/// A table of port slots in shared memory where processes register the
/// ports they open (a service's publishers, subscribers, …), and the
/// version word that tells everyone the table changed. Any process may
/// take back the slot of a dead one, in any pid namespace (leases).
///
/// ```text
/// slot (slotSize = 64 bytes), `count` of them from `base`:
///   +0  owner         UInt64  packed ProcessIdentity of the holder; 0 free
///   +8  portID        UInt64  0 while being registered
///   +16 registeredAt  UInt64  wall-clock ns
///   +24 nodeHash      UInt64  the registering node's name hash
/// version (elsewhere, shared by a service's tables): UInt64, bumped
///   whenever a port comes or goes
/// ```
///
/// A process claims a slot with a CAS on `owner`, writes the other fields,
/// publishes `portID` with a release store, then bumps the version. Readers
/// see a slot only once both `owner` and `portID` are set.
@_spi(ShmInternals) public struct PortTable: @unchecked Sendable {
    package static let slotSize = 64

    /// Byte offsets inside a slot (the table above).
    package enum SlotOffset {
        package static let owner = 0, portID = 8, registeredAt = 16, nodeHash = 24
    }

    let base: UnsafeMutableRawPointer
    /// Test hook: runs between a reclaimer's two steps, widening a window
    /// of nanoseconds so a test can race a registration into it.
    package static let betweenReclaimStepsForTesting = Mutex<(@Sendable () -> Void)?>(nil)

    /// Slots in the table.
    package let count: Int
    package let version: Version

    /// The table at `base` (`count` slots) whose changes bump `version`.
    package init(base: UnsafeMutableRawPointer, count: Int, version: Version) {
        self.base = base
        self.count = count
        self.version = version
    }

    /// The change counter of one or more tables.
    public struct Version: @unchecked Sendable {
        @usableFromInline let word: UnsafeMutablePointer<Atomic<UInt64>>

        @inlinable
        public init(_ address: UnsafeMutableRawPointer) { word = UnsafeMutablePointer(OpaquePointer(address)) }

        /// The current version (ports' hot paths compare it with the one they know).
        @inlinable @inline(__always)
        public var current: UInt64 {
            // SYNC POINT: acquire pairs with the release increment in `bump`.
            word.pointee.load(ordering: .acquiring)
        }

        package func bump() {
            // SYNC POINT: release pairs with the acquire load in `current`.
            word.pointee.wrappingAdd(1, ordering: .releasing)
        }
    }

    /// A registered port as a reader of the table sees it.
    package struct Entry: Equatable, Sendable {
        package let index: Int
        package let owner: ProcessIdentity
        package let portID: UInt64
        package let registeredAt: UInt64
        package let nodeHash: UInt64
    }

    private func word(_ index: Int, _ offset: Int) -> UnsafeMutablePointer<Atomic<UInt64>> {
        UnsafeMutablePointer(OpaquePointer(base + index * PortTable.slotSize + offset))
    }

    /// Registered ports (slots whose registration is complete).
    package func entries() -> [Entry] {
        (0..<count).compactMap { i in
            // SYNC POINT: acquire pairs with the release store of portID in `claim`.
            let owner = word(i, SlotOffset.owner).pointee.load(ordering: .acquiring)
            let id = word(i, SlotOffset.portID).pointee.load(ordering: .acquiring)
            guard owner != 0, id != 0 else { return nil }
            return Entry(index: i, owner: ProcessIdentity(packed: owner), portID: id,
                         registeredAt: word(i, SlotOffset.registeredAt).pointee.load(ordering: .relaxed),
                         nodeHash: word(i, SlotOffset.nodeHash).pointee.load(ordering: .relaxed))
        }
    }

    /// Claims the first free slot in `order` for this process and registers
    /// `portID` in it; returns its index, or nil if none is free.
    package func claim(portID: UInt64, nodeHash: UInt64, order: [Int]) -> Int? {
        let me = ProcessIdentity.current.packed
        for i in order where i < count {
            // SYNC POINT: acquire-release CAS pairs with the release store of 0 in
            // `release` and the CAS in `reclaimDead` (the previous holder's fields).
            if word(i, SlotOffset.owner).pointee.compareExchange(expected: 0, desired: me, ordering: .acquiringAndReleasing).exchanged {
                word(i, SlotOffset.registeredAt).pointee.store(wallClockNanoseconds(), ordering: .relaxed)
                word(i, SlotOffset.nodeHash).pointee.store(nodeHash, ordering: .relaxed)
                // SYNC POINT: release pairs with the acquire loads in `entries`.
                word(i, SlotOffset.portID).pointee.store(portID, ordering: .releasing)
                version.bump()
                return i
            }
        }
        return nil
    }

    /// Frees slot `index` if it still holds `portID`.
    package func release(index: Int, portID: UInt64) {
        // SYNC POINT: acquire-release CAS pairs with the registering store of the
        // port ID and with concurrent releasers/reclaimers: one of them frees it.
        guard word(index, SlotOffset.portID).pointee.compareExchange(expected: portID, desired: 0, ordering: .acquiringAndReleasing).exchanged
        else { return }
        // SYNC POINT: release pairs with the CAS in `claim` of the next holder.
        word(index, SlotOffset.owner).pointee.store(0, ordering: .releasing)
        version.bump()
    }

    /// Takes back the slots whose holders are dead (by lease, from any pid
    /// namespace), calling `onDead` for each (to remove its segment).
    /// Returns how many.
    @discardableResult
    package func reclaimDead(_ onDead: (Entry) -> Void) -> Int {
        var reclaimed = 0
        for i in 0..<count {
            let ownerWord = word(i, SlotOffset.owner)
            // SYNC POINT: acquire pairs with the CAS in `claim`.
            let owner = ownerWord.pointee.load(ordering: .acquiring)
            guard owner != 0, !ProcessIdentity(packed: owner).isAlive else { continue }
            // The reclaimer first takes the slot over as its own (one CAS: of several
            // reclaimers one wins), then clears the port ID, then frees the slot, so a
            // new holder can claim it only after that: no reclaimer can erase a newer
            // holder's port ID (one did: it freed the slot first and zeroed the ID
            // after, when someone may have claimed it in between).
            // SYNC POINT: acquire-release CAS pairs with the dead holder's CAS in
            // `claim` and its release store of portID (read below).
            guard ownerWord.pointee.compareExchange(expected: owner, desired: ProcessIdentity.current.packed,
                                                    ordering: .acquiringAndReleasing).exchanged else { continue }
            PortTable.betweenReclaimStepsForTesting.withLock { $0 }?()
            let portID = word(i, SlotOffset.portID).pointee.exchange(0, ordering: .acquiring)
            // SYNC POINT: release pairs with the next holder's CAS in `claim`.
            ownerWord.pointee.store(0, ordering: .releasing)
            // Freed before the (possibly slow) clean-up of its segments, so a port
            // registering meanwhile finds the slot.
            onDead(Entry(index: i, owner: ProcessIdentity(packed: owner), portID: portID, registeredAt: 0, nodeHash: 0))
            reclaimed += 1
        }
        if reclaimed > 0 { version.bump() }
        return reclaimed
    }
}
