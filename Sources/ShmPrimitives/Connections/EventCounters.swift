import Synchronization
import ShmSystem

/// One counter per event id in shared memory: notifiers increment the id's
/// counter, listeners compare what they saw with what is there now. A
/// counter, not a flag, so no notification is lost between two looks and
/// no listener clears another's.
///
/// ```text
/// offset 8 × id   counter UInt64   notifications of `id` since the service was made
/// ```
package struct EventCounters: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    /// Ids 0 ..< count.
    package let count: Int

    package static func size(count: Int) -> Int { 8 * count }

    package init(base: UnsafeMutableRawPointer, count: Int) {
        self.base = base
        self.count = count
    }

    private func word(_ id: Int) -> UnsafeMutablePointer<Atomic<UInt64>> {
        UnsafeMutablePointer(OpaquePointer(base + 8 * id))
    }

    /// A notifier fires `id` (before it wakes the listeners).
    package func fire(_ id: Int) {
        // SYNC POINT: release pairs with the acquire loads in `value` and `snapshot`.
        word(id).pointee.wrappingAdd(1, ordering: .releasing)
    }

    /// How often `id` fired.
    package func value(_ id: Int) -> UInt64 {
        // SYNC POINT: acquire pairs with the release increment in `fire`.
        word(id).pointee.load(ordering: .acquiring)
    }

    /// Every counter, for a listener's baseline.
    package func snapshot() -> [UInt64] { (0..<count).map(value) }

    /// True if any counter differs from `baseline`, re-read after announcing
    /// a sleeper (a readiness check before sleeping).
    package func changedBeforeSleeping(since baseline: [UInt64]) -> Bool {
        // SYNC POINT (Dekker): seq_cst loads pair with the sleeper announcement's
        // seq_cst increment (`Parker`) and the notifier's signal after `fire`.
        baseline.indices.contains { word($0).pointee.load(ordering: .sequentiallyConsistent) != baseline[$0] }
    }
}
