import ShmSystem

/// How a waiter waits for a condition that another process will make true.
///
/// | strategy | latency | CPU while waiting |
/// | --- | --- | --- |
/// | `.busySpin` | lowest (the other core sees a write in ~80 ns here) | one full core |
/// | `.yielding` | near busy-spin when the core is free; the next time slice when others run | one core, given up to any runnable thread at every look |
/// | `.spinThenPark` (default) | spinning speed while messages keep coming; a wake-up (~33 µs on this VM) after a pause | spins for an adaptive budget, then none |
/// | `.block` | a wake-up every time | none |
///
/// Whatever the strategy, a waker makes a `futex` syscall only when a waiter
/// has announced that it sleeps, so a sender talking to a spinning receiver
/// pays no syscall.
public enum WaitStrategy: Sendable, Hashable {
    /// Spin with the CPU's pause hint until the condition holds or the deadline passes.
    case busySpin
    /// Spin for an adaptive budget, then park on a futex.
    case spinThenPark(SpinPolicy)
    /// Park on a futex at once (after re-checking the condition).
    case block
    /// Look, then give the CPU to any other runnable thread
    /// (`sched_yield(2)`), until the condition holds or the deadline passes:
    /// never parks, so no wake-up is paid after a pause (Aeron's yielding
    /// idle strategy). For a thread that must react fast to rare events on
    /// a machine where it shares cores: unlike `.busySpin` it does not hold
    /// a core others need; like it, it shows as one core busy when alone.
    case yielding

    /// `.spinThenPark(.default)`.
    public static let `default` = WaitStrategy.spinThenPark(.default)

    /// True for the strategies that never sleep (`.busySpin`, `.yielding`):
    /// their peers need not wake them.
    public var neverParks: Bool {
        switch self {
        case .busySpin, .yielding: true
        case .spinThenPark, .block: false
        }
    }
}

/// Tuning knobs of `.spinThenPark`.
///
/// The waiter spins for a budget between `minimumSpin` and `maximumSpin`
/// before parking. The budget adapts to what waiting has been like lately:
/// a wait that ends while spinning after *t* raises the budget to at least
/// 2*t* (so a continuously talking pair keeps spinning and never pays a
/// wake-up); a wait that had to park halves it (so a receiver whose sender
/// went quiet soon stops burning CPU and an idle pair costs nothing).
///
/// Defaults: `maximumSpin` 50 µs — longer than a futex wake-up costs on this
/// machine (~33 µs, the vCPU halts when idle), which is the classic
/// break-even for spinning before blocking; `minimumSpin` 2 µs.
public struct SpinPolicy: Sendable, Hashable {
    public var minimumSpin: Duration
    public var maximumSpin: Duration

    public init(minimumSpin: Duration = .microseconds(2), maximumSpin: Duration = .microseconds(50)) {
        self.minimumSpin = minimumSpin
        self.maximumSpin = max(minimumSpin, maximumSpin)
    }

    public static let `default` = SpinPolicy()
}

/// Process-local state of one waiter: its strategy and the adaptive spin
/// budget. Not shared between processes; one per waiting handle.
@usableFromInline
package struct Waiter: Sendable {
    @usableFromInline package let strategy: WaitStrategy
    @usableFromInline var budget: UInt64
    @usableFromInline let minimum: UInt64
    @usableFromInline let maximum: UInt64

    package init(_ strategy: WaitStrategy) {
        self.strategy = strategy
        if case .spinThenPark(let policy) = strategy {
            minimum = policy.minimumSpin.nanoseconds
            maximum = policy.maximumSpin.nanoseconds
        } else {
            minimum = 0
            maximum = 0
        }
        budget = maximum
    }

    /// Current spin budget in nanoseconds (for tests and `shm` diagnostics).
    package var spinBudget: UInt64 { budget }

    /// Waits until `ready()` holds or `deadline` (monotonic ns; nil: never)
    /// passes. Returns whether the condition holds.
    ///
    /// - Parameters:
    ///   - parker: where to sleep; `ready()` must read the condition with a
    ///     sequentially consistent load (see `Parker`).
    ///   - slice: while parked, wake at least this often to run `keepWaiting`
    ///     (peer liveness and the like); returning false ends the wait.
    @inlinable @inline(__always)
    package mutating func wait(
        on parker: Parker, deadline: UInt64?, slice: UInt64 = 100_000_000,
        ready: () -> Bool, keepWaiting: () -> Bool = { true }
    ) -> Bool {
        if let outcome = spin(deadline: deadline, ready: ready, keepWaiting: keepWaiting) { return outcome }
        return park(on: parker, deadline: deadline, slice: slice, ready: ready, keepWaiting: keepWaiting)
    }

    /// Waits until `ready()` holds or `deadline` passes on any of several
    /// parkers — a wait set's attachments: the same spin phase and budget
    /// as `wait(on:)`, then one `futex_waitv(2)` on all of them (see
    /// `ParkerSet`). `ready()` must use sequentially consistent loads.
    package mutating func wait(onAny parkers: [Parker], deadline: UInt64?, ready: () -> Bool) -> Bool {
        if parkers.count == 1 { return wait(on: parkers[0], deadline: deadline, ready: ready) }
        if let outcome = spin(deadline: deadline, ready: ready, keepWaiting: { true }) { return outcome }
        while true {
            if ParkerSet.wait(on: parkers, until: deadline, pollInterval: 200_000, check: { ready() ? true : nil }) != nil {
                return true
            }
            if let deadline, monotonicNanoseconds() >= deadline { return ready() }
        }
    }

    /// The spin phase of every wait: true when `ready()` held, false when
    /// the deadline passed (or `keepWaiting` said stop), nil when the
    /// strategy says to sleep now (`.block`, or `.spinThenPark` past its
    /// budget — which then halves; a wait that ends while spinning after
    /// *t* raises it to at least 2*t*).
    @inlinable @inline(__always)
    mutating func spin(deadline: UInt64?, ready: () -> Bool, keepWaiting: () -> Bool) -> Bool? {
        if ready() { return true }
        switch strategy {
        case .busySpin:
            var spins: UInt32 = 0
            while true {
                CPU.relax()
                if ready() { return true }
                spins &+= 1
                if spins & 0x3ff == 0 {
                    if let deadline, monotonicNanoseconds() >= deadline { return false }
                    if spins & 0xfffff == 0 && !keepWaiting() { return false }
                }
            }
        case .yielding:
            // A yield can take a whole time slice on a busy core: the clock is
            // read at every look (~40 ns beside the syscall), `keepWaiting`
            // asked every 100 ms as a parked waiter would be.
            var nextCheck = monotonicNanoseconds() &+ 100_000_000
            while true {
                CPU.yield()
                if ready() { return true }
                let now = monotonicNanoseconds()
                if let deadline, now >= deadline { return false }
                if now >= nextCheck {
                    if !keepWaiting() { return false }
                    nextCheck = now &+ 100_000_000
                }
            }
        case .spinThenPark:
            let start = monotonicNanoseconds()
            let spinUntil = start &+ budget
            var spins: UInt32 = 0
            while true {
                CPU.relax()
                if ready() {
                    let took = monotonicNanoseconds() &- start
                    budget = min(maximum, max(budget, took &* 2))
                    return true
                }
                spins &+= 1
                // Reading the clock costs ~40 ns on this VM: look at it only
                // every 256 pauses (a few µs), well inside the budget.
                if spins & 0xff == 0 {
                    let now = monotonicNanoseconds()
                    if let deadline, now >= deadline { return false }
                    if now >= spinUntil { break }
                }
            }
            budget = max(minimum, budget / 2)
            return nil
        case .block:
            return nil
        }
    }

    @usableFromInline @inline(never)
    func park(
        on parker: Parker, deadline: UInt64?, slice: UInt64,
        ready: () -> Bool, keepWaiting: () -> Bool
    ) -> Bool {
        while true {
            let now = monotonicNanoseconds()
            if let deadline, now >= deadline { return ready() }
            let wake = min(deadline ?? .max, now &+ slice)
            if parker.sleep(until: wake, ready: ready) { return true }
            if ready() { return true }
            if !keepWaiting() { return false }
        }
    }
}
