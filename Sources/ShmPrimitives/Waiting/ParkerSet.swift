import Synchronization
import ShmSystem

/// Waiting on several parkers at once — the engine of wait sets and of the
/// readiness helper: `Parker`'s protocol over N parkers and one
/// `futex_waitv(2)`.
///
/// 1. read each parker's `seq` (the futex values to sleep on),
/// 2. announce a sleeper on each (seq_cst),
/// 3. run `check` (its loads must be seq_cst: the Dekker pair with the
///    wakers' publish), and return at once if it found something,
/// 4. sleep until any `seq` (or an extra word) changes, a wake, or the
///    deadline; then run `check` again and withdraw the announcements.
///
/// Before Linux 5.16 (no `futex_waitv`) one parker is slept on alone and
/// several are polled every `pollInterval` nanoseconds.
package enum ParkerSet {
    /// One word besides the parkers (the readiness helper's state word) and
    /// the value it holds while the waiter should keep sleeping.
    package struct ExtraWord {
        let address: UnsafeMutableRawPointer
        let expected: UInt32
        package init(_ address: UnsafeMutableRawPointer, expected: UInt32) {
            self.address = address
            self.expected = expected
        }
    }

    package static func wait<Found>(on parkers: [Parker], also extra: ExtraWord? = nil, until deadline: UInt64?,
                                    pollInterval: UInt64, check: () -> Found?) -> Found? {
        // SYNC POINT: acquire pairs with the release bump of each parker's seq in `Parker.wake`.
        var expected = parkers.map { $0.seq.pointee.load(ordering: .acquiring) }
        // SYNC POINT (Dekker): these seq_cst increments and the seq_cst loads in
        // `check` pair with the wakers' seq_cst publish and their seq_cst load of
        // `sleepers` in `Parker.wakeIfSleeping`.
        for parker in parkers { parker.sleepers.pointee.wrappingAdd(1, ordering: .sequentiallyConsistent) }
        defer { for parker in parkers { parker.sleepers.pointee.wrappingSubtract(1, ordering: .relaxed) } }
        if let found = check() { return found }
        var words = parkers.map { UnsafeMutableRawPointer($0.seq) }
        if let extra {
            words.append(extra.address)
            expected.append(extra.expected)
        }
        guard !words.isEmpty else { return nil }
        if Futex.waitAny(words, expected: expected, deadline: deadline) == .unsupported {
            let slice = monotonicNanoseconds() &+ pollInterval
            if parkers.count == 1 {
                _ = Futex.wait(UnsafeMutableRawPointer(parkers[0].seq), expected: expected[0], deadline: deadline.map { min($0, slice) } ?? slice)
            } else {
                sleepNanoseconds(pollInterval)
            }
        }
        return check()
    }
}

/// The readiness helper's state word (process-local memory, used as a
/// futex word between the owner's thread and the helper thread).
///
/// ```text
/// 0 armed (the helper watches), 1 signalled (waiting for rearm), 2 stopping
/// ```
package final class ReadinessState: @unchecked Sendable {
    package enum State: UInt32 { case armed = 0, signalled = 1, stopping = 2 }

    private let word = UnsafeMutablePointer<Atomic<UInt32>>.allocate(capacity: 1)

    package init() { word.initialize(to: Atomic(0)) }
    deinit { word.deallocate() }

    package var state: State {
        // SYNC POINT: acquire pairs with the release of `rearm`, `signal` and `stop`.
        State(rawValue: word.pointee.load(ordering: .acquiring)) ?? .stopping
    }

    /// For `ParkerSet.wait`: the helper keeps sleeping while armed.
    package var whileArmed: ParkerSet.ExtraWord { ParkerSet.ExtraWord(UnsafeMutableRawPointer(word), expected: State.armed.rawValue) }

    /// The helper found something: armed → signalled. False if it was not armed.
    package func signal() -> Bool {
        // SYNC POINT: acquire-release CAS pairs with `rearm`'s CAS and `stop`'s release store.
        word.pointee.compareExchange(expected: State.armed.rawValue, desired: State.signalled.rawValue,
                                     ordering: .acquiringAndReleasing).exchanged
    }

    /// The owner drained what was ready: signalled → armed, and wakes the helper.
    package func rearm() {
        // SYNC POINT: acquire-release CAS pairs with the helper's CAS in `signal`.
        if word.pointee.compareExchange(expected: State.signalled.rawValue, desired: State.armed.rawValue,
                                        ordering: .acquiringAndReleasing).exchanged {
            Futex.wake(UnsafeMutableRawPointer(word), count: 1)
        }
    }

    /// The owner is going: the helper stops.
    package func stop() {
        // SYNC POINT: release pairs with the helper's acquire load in `state`.
        word.pointee.store(State.stopping.rawValue, ordering: .releasing)
        Futex.wake(UnsafeMutableRawPointer(word), count: 1)
    }

    /// Sleeps while signalled (waiting for `rearm`), at most until `deadline`.
    package func sleepWhileSignalled(until deadline: UInt64) {
        _ = Futex.wait(UnsafeMutableRawPointer(word), expected: State.signalled.rawValue, deadline: deadline)
    }
}
