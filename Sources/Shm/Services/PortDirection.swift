import Synchronization
import ShmSystem
@_spi(ShmInternals) import ShmPrimitives

/// Which port table sends over a zero-copy connection and which receives.
///
/// Publish/subscribe has one direction (publishers → subscribers). Request/
/// response has two over the same two tables: clients send requests to
/// servers (`.toConsumers`) and servers send responses back (`.toProducers`),
/// each port owning a pool for what it sends and an inbox for what it
/// receives (`svc.<service>.p<id>`, `svc.<service>.s<id>`).
struct PortDirection: Sendable, Equatable {
    /// The table whose ports own the pools (senders).
    let senders: ServiceLayout.Table
    /// The table whose ports own the inboxes (receivers).
    let receivers: ServiceLayout.Table

    /// Publishers → subscribers, clients → servers.
    static let toConsumers = PortDirection(senders: .producers, receivers: .consumers)
    /// Servers → clients.
    static let toProducers = PortDirection(senders: .consumers, receivers: .producers)

    /// The direction in which ports of `table` send.
    static func sending(from table: ServiceLayout.Table) -> PortDirection {
        table == .consumers ? .toProducers : .toConsumers
    }
}

/// A port's slot in its service's port table, shared by the port's halves:
/// a publish/subscribe port is one half (publisher or subscriber); a client
/// or server is two (the pool it sends from, the inbox it receives into),
/// registered once under one ID so that peers find both. The slot is freed
/// when the last half leaves.
final class PortRegistration: @unchecked Sendable {
    let layout: ServiceLayout
    let table: ServiceLayout.Table
    let index: Int
    let portID: UInt64
    /// Halves still holding the slot, and the direction of a pool whose
    /// sending half left first: its name is settled after the slot is freed
    /// (`removeDepartedPoolIfUnawaited`, Dekker with receivers). Process
    /// memory, behind a lock: halves may leave on different threads.
    private let state: Mutex<(holders: Int, departedPool: PortDirection?)>

    /// Claims a slot of `table` for `portID` (whose segments exist already:
    /// peers map them as soon as they see the slot).
    init(layout: ServiceLayout, table: ServiceLayout.Table, portID: UInt64, nodeHash: UInt64, halves: Int,
         avoiding: Set<Int> = []) throws(ServiceError) {
        self.layout = layout
        self.table = table
        self.portID = portID
        state = Mutex((halves, nil))
        index = try layout.register(table, portID: portID, nodeHash: nodeHash, avoiding: avoiding) { _ in }
    }

    /// One half leaves. Returns true if it was the last (the slot is free
    /// now). A sending half passes `pool`, the direction it sent in: if
    /// another half is still there, the pool's name is settled when that
    /// one leaves (if the sender is last, it settles it itself).
    @discardableResult
    func leave(pool direction: PortDirection? = nil) -> Bool {
        let (last, departed) = state.withLock { state -> (Bool, PortDirection?) in
            if let direction { state.departedPool = direction }
            state.holders -= 1
            return (state.holders == 0, state.departedPool)
        }
        guard last else { return false }
        layout.unregister(table, index: index, portID: portID)
        if direction == nil, let other = departed {
            layout.removeDepartedPoolIfUnawaited(portID, direction: other)
        }
        return true
    }
}
