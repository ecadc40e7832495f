import Synchronization
import ShmSystem

/// Keeps the pages ahead of a log's appenders made ready, on a thread of its
/// own, and makes the next segment before the appenders need it — Chronicle
/// Queue's pretoucher.
///
/// **Why.** A segment's pages are reserved when the segment is made
/// (`fallocate`), but a tmpfs page is zeroed by the first fault that maps
/// it, and every process maps it once more into its own page tables. An
/// appender does both as it goes (`madvise(MADV_POPULATE_WRITE)` 512 KiB
/// ahead, in `append`): on this project's VM, 1.4 µs per fresh 4 KiB page —
/// ~25 ns of every 72-byte record — and 0.3 µs per page once another
/// mapping has zeroed it. The pretoucher pays the first part on another
/// core: it follows the log's claim position (`log.meta`) and populates
/// `lead` bytes past it in its own mapping of the segment; the page cache
/// is shared, so appenders in any process find the pages zeroed. Once the
/// claim is past half the segment, or within `lead` of its end (for
/// segments no larger than the lead: as soon as the claim enters one), it
/// makes the next segment (`fallocate`, header, rename: what the rolling
/// appender would otherwise do inside an `append`; so one segment's space
/// is taken that much early), and within `lead` of the end it touches the
/// next segment's first pages.
///
/// **What it never does.** It writes no byte of the log: populating a page
/// changes none of its contents. On a disk file system the populated pages
/// become dirty zeros (as the appender's own prefault already makes them).
/// A segment cut short under it (`ftruncate`) makes `madvise` fail with an
/// error, counted in `failures` — never a `SIGBUS`. On a kernel without
/// `MADV_POPULATE_WRITE` (before 5.14) it only makes segments ahead.
///
/// **Recovery and retention.** A next segment made ahead stays empty until
/// the claim rolls into it: recovery (after a crash or a clean restart)
/// continues in the current segment and keeps the empty one for later
/// (`Log.recover`), `trim(maxBytes:)` does not count it, and
/// `trim(maxAge:)` dates a segment by the next one's first record, not by
/// when that file was made. If the file made ahead is deleted under it,
/// the pretoucher makes it again; a failed make (no room) is counted once
/// and retried with back-off from 10 ms to 1 s.
///
/// Run one per log, in the appending process or any other (`shm log
/// pretouch`). It costs one thread, mostly asleep (it looks every
/// `interval`), and one read of the claim word's line per look.
public final class LogPretoucher: @unchecked Sendable {
    public let log: Log
    /// Bytes kept ready past the claim position.
    public let lead: Int
    /// How long the thread sleeps when it is `lead` bytes ahead.
    public let interval: Duration

    /// What the thread and its owner share (in-process memory only).
    final class Control: @unchecked Sendable {
        /// 0 running, 1 asked to stop (a futex word: `stop` wakes the sleeper).
        let stopWord = UnsafeMutablePointer<Atomic<UInt32>>.allocate(capacity: 1)
        /// 0 running, 1 the thread has returned (a futex word: `stop` waits on it).
        let exitedWord = UnsafeMutablePointer<Atomic<UInt32>>.allocate(capacity: 1)
        let touchedBytes = Atomic<Int>(0)
        let segmentsMade = Atomic<Int>(0)
        let failures = Atomic<Int>(0)
        init() {
            stopWord.initialize(to: Atomic(0))
            exitedWord.initialize(to: Atomic(0))
        }
        deinit {
            stopWord.deallocate()
            exitedWord.deallocate()
        }
    }
    let control = Control()

    /// Starts the pretoucher's thread.
    ///
    /// - Parameters:
    ///   - log: the log whose appenders (in any process) it serves.
    ///   - lead: bytes to keep ready past the claim position (at least
    ///     64 KiB; rounded up to whole pages). The default, 8 MiB, is
    ///     ~116,000 records of 40 bytes.
    ///   - interval: how long to sleep when `lead` bytes are ready
    ///     (1 µs ... 1 s).
    ///   - cpu: pin the thread to this CPU (`sched_setaffinity`); nil leaves
    ///     it where the scheduler puts it.
    /// - Throws: `.invalidConfiguration` for a lead or interval out of range,
    ///   `.system` if the thread cannot be started (`pthread_create`).
    public init(log: Log, lead: Int = 8 << 20, interval: Duration = .microseconds(100), cpu: Int? = nil) throws(LogError) {
        guard lead >= 64 << 10, lead <= 1 << 30 else {
            throw .invalidConfiguration("pretouch lead \(lead) bytes must be from 64 KiB to 1 GiB")
        }
        guard interval >= .microseconds(1), interval <= .seconds(1) else {
            throw .invalidConfiguration("pretouch interval \(interval) must be from 1 µs to 1 s")
        }
        self.log = log
        self.lead = (lead + 4095) & ~4095
        self.interval = interval
        let worker = Worker(log: log, lead: self.lead, interval: UInt64(interval.nanoseconds), cpu: cpu, control: control)
        do { try DedicatedThread.start { worker.run() } } catch {
            // No thread: `deinit` (which runs, every property being set) must not wait for one.
            control.exitedWord.pointee.store(1, ordering: .relaxed)
            throw .system(operation: "pthread_create", path: log.directory, error)
        }
    }

    deinit { stop() }

    /// Bytes populated so far (the next segment's included).
    public var touchedBytes: Int { control.touchedBytes.load(ordering: .relaxed) }
    /// Next segments this pretoucher made or found made (each counted once).
    public var segmentsMade: Int { control.segmentsMade.load(ordering: .relaxed) }
    /// `madvise` calls or segment opens that failed (a segment cut short or
    /// deleted under it, no room left for the next segment).
    public var failures: Int { control.failures.load(ordering: .relaxed) }

    /// Stops the thread and waits for it, at most 5 s (a `madvise` or a
    /// segment being made finishes first). Safe to call more than once.
    /// Returns false if the thread had not returned by then: it stops after
    /// its current step (it may still finish making a segment).
    @discardableResult
    public func stop() -> Bool {
        control.stopWord.pointee.store(1, ordering: .relaxed)
        Futex.wake(UnsafeMutableRawPointer(control.stopWord))
        let deadline = monotonicNanoseconds() &+ 5_000_000_000
        while control.exitedWord.pointee.load(ordering: .relaxed) == 0 {
            if Futex.wait(UnsafeMutableRawPointer(control.exitedWord), expected: 0, deadline: deadline) == .timedOut {
                return control.exitedWord.pointee.load(ordering: .relaxed) != 0
            }
        }
        return true
    }

    /// The thread's side: owns its mappings, shares only `control`.
    final class Worker: @unchecked Sendable {
        let log: Log
        let lead: Int
        let interval: UInt64
        let cpu: Int?
        let control: Control
        /// Bytes populated per `madvise`: short enough that `stop` and a
        /// claim that moved on are noticed between calls.
        static let step = 256 << 10

        /// The segment the claim is in, and how far it is ready (an offset).
        var current: (segment: SegmentFile, ready: Int)?
        /// The segment after it, once made.
        var next: (segment: SegmentFile, ready: Int)?
        /// The last segment that could not be opened or made.
        var unopenable: UInt32?
        /// After a failed open or make: no retry before this time, and the
        /// next wait (doubling from 10 ms to 1 s) — a full disk must not
        /// turn into a make attempt every `interval`.
        var retryAt: UInt64 = 0
        var backoff: UInt64 = 10_000_000
        /// The kernel refused `MADV_POPULATE_WRITE` (before Linux 5.14): only segments are made.
        var populateUnsupported = false

        func failed(_ segment: UInt32) {
            if unopenable != segment { control.failures.add(1, ordering: .relaxed) }
            unopenable = segment
            retryAt = monotonicNanoseconds() &+ backoff
            backoff = min(backoff * 2, 1_000_000_000)
        }

        func succeeded() {
            unopenable = nil
            backoff = 10_000_000
        }

        init(log: Log, lead: Int, interval: UInt64, cpu: Int?, control: Control) {
            self.log = log
            self.lead = lead
            self.interval = interval
            self.cpu = cpu
            self.control = control
        }

        func run() {
            if let cpu { try? CPU.pinCurrentThread(to: cpu) }
            while control.stopWord.pointee.load(ordering: .relaxed) == 0 {
                if !touchOneStep() {
                    _ = Futex.wait(UnsafeMutableRawPointer(control.stopWord), expected: 0, deadline: monotonicNanoseconds() &+ interval)
                }
            }
            current = nil
            next = nil
            control.exitedWord.pointee.store(1, ordering: .relaxed)
            Futex.wake(UnsafeMutableRawPointer(control.exitedWord))
        }

        /// Populates one step where one is due; false when `lead` bytes are
        /// ready (or nothing can be done now), so the caller sleeps.
        func touchOneStep() -> Bool {
            if retryAt != 0 {
                guard monotonicNanoseconds() >= retryAt else { return false }
                retryAt = 0
            }
            let at = log.meta.loadClaimPosition()
            let segmentSize = log.meta.segmentSize
            // The claim word is shared memory: a damaged one only idles the pretoucher.
            guard at.segment < UInt32.max - 2, Int(at.offset) <= segmentSize else { return false }
            if current?.segment.number != at.segment {
                // The segment made ahead, unless someone deleted it meanwhile
                // (recovery drops empty segments past the one it continues in).
                if let made = next, made.segment.number == at.segment, made.segment.file.isStillNamed {
                    current = made
                } else {
                    // A segment the claim is in exists (its appender made it first).
                    guard let opened = try? log.openSegment(at.segment, writable: true) else {
                        failed(at.segment) // counted once per segment, retried with back-off
                        return false
                    }
                    succeeded()
                    current = (opened, opened.dataOffset & ~4095)
                }
                next = nil
            }
            guard let (segment, touched) = current else { return false }
            // Pages behind the claim are the appenders' already.
            let ready = max(touched, Int(at.offset) & ~4095)
            let goal = (Int(at.offset) + lead + 4095) & ~4095
            if !populateUnsupported, ready < min(goal, segment.size) {
                let end = min(ready + Worker.step, goal, segment.size)
                populate(segment, ready..<end)
                current = (segment, end)
                return true
            }
            current = (segment, ready)
            // Past half the segment (or within `lead` of its end): the next segment is
            // made now — making one takes a while (`fallocate`: ~13 ms for 64 MiB here,
            // during which a fast appender writes more than a small lead).
            guard goal > segment.size || Int(at.offset) > segment.size / 2 else { return false }
            if next == nil {
                do {
                    let made = try SegmentFile.createOrOpen(directory: log.directory, number: at.segment + 1, meta: log.meta,
                                                            syncDirectory: true)
                    next = (made, made.dataOffset & ~4095)
                    succeeded()
                    control.segmentsMade.add(1, ordering: .relaxed)
                } catch {
                    failed(at.segment + 1) // no room left, say: counted once, retried with back-off
                    return false
                }
            }
            // Within `lead` of the end: the next segment's first pages made ready.
            guard !populateUnsupported, let (following, followingReady) = next, goal > segment.size else { return false }
            let want = min(following.dataOffset + (goal - segment.size), following.size)
            guard followingReady < want else { return false }
            // Deleted under us (recovery drops empty segments past the one it continues in): make it again.
            guard following.file.isStillNamed else {
                next = nil
                return true
            }
            let end = min(followingReady + Worker.step, want)
            populate(following, followingReady..<end)
            next = (following, end)
            return true
        }

        func populate(_ segment: SegmentFile, _ range: Range<Int>) {
            do {
                try segment.file.mapping.advise(.populateWrite, range: range)
                control.touchedBytes.add(range.count, ordering: .relaxed)
            } catch {
                control.failures.add(1, ordering: .relaxed)
                // EINVAL: a kernel without MADV_POPULATE_WRITE; stop asking (a segment cut
                // short fails with EFAULT, and the claim moving on ends that).
                if case .advise(_, let errno) = error, errno == .invalidArgument { populateUnsupported = true }
            }
        }
    }
}

extension Log {
    /// Starts a pretoucher for this log (`LogPretoucher`).
    public func pretoucher(lead: Int = 8 << 20, interval: Duration = .microseconds(100), cpu: Int? = nil) throws(LogError) -> LogPretoucher {
        try LogPretoucher(log: self, lead: lead, interval: interval, cpu: cpu)
    }
}
