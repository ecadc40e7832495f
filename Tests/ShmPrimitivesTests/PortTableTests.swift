#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import Testing
import ShmTestSupport
import ShmSystem
@_spi(ShmInternals) import ShmPrimitives

@Suite("Port tables")
struct PortTableTests {
    /// Several processes may reclaim a dead holder's slot at once while a
    /// new port registers in it: exactly one reclaimer takes it, and none
    /// erases the new holder's port ID (one did: it freed the slot, then
    /// zeroed the ID, after someone had claimed the slot in between).
    @Test func racingReclaimersTakeADeadSlotOnceAndNeverEraseTheNextHolder() throws {
        let child = try ChildProcess.spawn("/bin/true", arguments: [])
        _ = try child.wait(timeout: .seconds(10))
        let dead = ProcessIdentity(pid: child.pid, startTime: 0, lease: 0)
        #expect(!dead.isAlive)
        let memory = UnsafeMutableRawPointer.allocate(byteCount: 2 * PortTable.slotSize, alignment: 64)
        defer { memory.deallocate() }
        memory.initializeMemory(as: UInt8.self, repeating: 0, count: 2 * PortTable.slotSize)
        let table = PortTable(base: memory, count: 1, version: PortTable.Version(memory + PortTable.slotSize))
        let box = UncheckedSendable(table)
        // Widen the reclaimers' window so the registration lands inside it.
        PortTable.betweenReclaimStepsForTesting.withLock { $0 = { sleepNanoseconds(200_000) } }
        defer { PortTable.betweenReclaimStepsForTesting.withLock { $0 = nil } }
        for round in 0..<50 {
            memory.storeBytes(of: dead.packed, toByteOffset: PortTable.SlotOffset.owner, as: UInt64.self)
            memory.storeBytes(of: UInt64(77), toByteOffset: PortTable.SlotOffset.portID, as: UInt64.self)
            let reclaimed = Atomic<Int>(0)
            let newID = UInt64(1000 + round)
            let reclaimers = (0..<3).map { _ in
                TestThread { _ = box.value.reclaimDead { entry in
                    #expect(entry.portID == 77)
                    reclaimed.wrappingAdd(1, ordering: .relaxed)
                } }
            }
            let claimer = TestThread {
                let end = monotonicNanoseconds() + 5_000_000_000
                while box.value.claim(portID: newID, nodeHash: 0, order: [0]) == nil && monotonicNanoseconds() < end {}
            }
            for thread in reclaimers { thread.join() }
            claimer.join()
            #expect(reclaimed.load(ordering: .relaxed) == 1, "round \(round)")
            let entries = table.entries()
            #expect(entries.map(\.portID) == [newID], "round \(round): \(entries)")
            #expect(entries.first?.owner == ProcessIdentity(packed: ProcessIdentity.current.packed))
            table.release(index: 0, portID: newID)
            #expect(table.entries().isEmpty)
        }
    }
}

struct UncheckedSendable<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
