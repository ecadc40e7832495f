import ShmSystem
import ShmPrimitives

/// A record read from a log (a copy of its payload).
public struct LogRecord: Hashable, Sendable {
    public let sequence: UInt64
    public let position: LogPosition
    /// Wall-clock nanoseconds since 1970, set by the appender.
    public let timestamp: UInt64
    public let bytes: [UInt8]

    /// The payload as UTF-8 text.
    public var text: String { String(decoding: bytes, as: UTF8.self) }
}

/// A record in place, valid only inside `LogTailer.withNext` (do not let
/// `unsafeBytes` escape: the mapping may go when the tailer changes segment).
public struct LogRecordView {
    public let sequence: UInt64
    public let position: LogPosition
    public let timestamp: UInt64
    /// The payload in the mapped segment (valid inside `withNext` only).
    public let unsafeBytes: UnsafeRawBufferPointer
    /// Bytes in the payload.
    public var count: Int { unsafeBytes.count }

    @available(*, deprecated, renamed: "unsafeBytes")
    public var bytes: UnsafeRawBufferPointer { unsafeBytes }
}

/// Reads a log in order, in any process, while it is written. Use each
/// tailer from one thread at a time.
///
/// Blocking reads spin briefly and then sleep on a futex in `log.meta`,
/// which appenders wake after a commit only if a tailer said it sleeps.
///
/// A record that fails its checksum is never returned: `next` throws
/// `LogError.corruptRecord` for it and continues after it on the next call.
/// A claim of a killed appender (its pid is gone) is stepped over; so is a
/// hole before the claim word that stays empty for `abandonedClaimTimeout`
/// (an appender killed between claiming and marking its claim).
public final class LogTailer: @unchecked Sendable {
    public let log: Log
    public let onDeletedSegment: DeletedSegmentPolicy
    /// How this tailer waits: its strategy and adaptive spin budget (kept
    /// across reads, so a busy log keeps the tailer spinning and a quiet one
    /// lets it sleep), the same engine as every port's.
    var waiter: Waiter
    var segment: SegmentFile?
    /// The next slot to read.
    public private(set) var position: LogPosition
    /// Times this tailer found its next segment deleted by retention and
    /// moved on to the oldest retained record (`.moveToOldest`): the records
    /// in between were never read. Compare before and after a read to notice.
    public private(set) var retentionJumps = 0
    /// How long an empty slot below the claim word may stay empty before
    /// the tailer looks past it (`.zero`: at once — when no appender is
    /// alive, as in tools reading a log after a crash).
    public var abandonedClaimTimeout: Duration = .seconds(2)
    var holeSince: (LogPosition, UInt64)?
    var lastLivenessCheck: (LogPosition, UInt64)?
    /// `tailers.lock`, held shared by tailers that may sleep (-1: none).
    let tailersLock: FileLock?
    /// Registered in `log.meta`'s parking-tailers count. A tailer killed
    /// while registered leaves it one too high (appenders then check for
    /// sleepers needlessly). A tailer registering while an appender decides
    /// how to publish may sleep through that one record's wake-up: its
    /// sleep is cut into 20 ms slices, which bounds the delay.
    let parks: Bool

    init(log: Log, start: TailStart, onDeletedSegment: DeletedSegmentPolicy, waitStrategy: WaitStrategy) throws(LogError) {
        self.log = log
        self.onDeletedSegment = onDeletedSegment
        waiter = Waiter(waitStrategy)
        parks = !waitStrategy.neverParks
        switch start {
        case .start: position = log.startPosition
        case .end: position = log.nextPosition.position
        case .sequence(let s): position = try log.position(ofSequence: s)
        case .time(let t):
            do { position = try log.position(ofTime: t) } catch .noSuchRecord(_) { position = log.nextPosition.position }
        case .position(let p): position = LogTailer.valid(p, log: log)
        }
        // Appenders check for sleepers only while a tailer that may sleep exists.
        if parks {
            // Held shared while we live, so recovery can tell that no tailer
            // is left and reset counts that killed tailers left too high.
            tailersLock = try? FileLock(path: log.directory + "/tailers.lock")
            _ = try? tailersLock?.lock(.shared, timeout: nil)
            // SYNC POINT: seq_cst pairs with the appenders' load of the count in `publish`
            // (a race with one publish costs at most one 20 ms sleep slice).
            log.meta.parkingTailers.pointee.wrappingAdd(1, ordering: .sequentiallyConsistent)
        } else {
            tailersLock = nil
        }
    }

    deinit {
        if parks { log.meta.parkingTailers.pointee.wrappingSubtract(1, ordering: .relaxed) }
    }

    /// Moves to `position` (a position from `append` or a record).
    public func seek(to position: LogPosition) {
        self.position = LogTailer.valid(position, log: log)
        holeSince = nil
    }

    /// A position moved into the data area and onto an 8-byte boundary.
    static func valid(_ p: LogPosition, log: Log) -> LogPosition {
        LogPosition(segment: p.segment, offset: max(UInt32(log.dataOffset), p.offset & ~7))
    }

    // MARK: Reading

    enum Poll {
        case record(LogRecordView)
        /// Nothing yet at the position; the word seen there.
        case waiting(segment: SegmentFile?, offset: Int, word: UInt64)
    }

    /// One attempt at the next record.
    func poll() throws(LogError) -> Poll {
        while true {
            guard let segment = try currentSegment() else {
                return .waiting(segment: nil, offset: 0, word: 0)
            }
            let offset = Int(position.offset)
            switch RecordWalker.step(segment, at: offset) {
            case .record(_, let length, let sequence, let timestamp, let intact):
                let at = position
                holeSince = nil
                guard intact else {
                    // Its length is not to be trusted: continue at the next
                    // record, or where the claim word says records continue.
                    skipDamage(in: segment, at: offset, claimedSpan: RecordFormat.span(payload: length))
                    throw .corruptRecord(position: at, sequence: sequence, reason: "checksum mismatch")
                }
                position.offset += UInt32(RecordFormat.span(payload: length))
                let payload = UnsafeRawBufferPointer(start: segment.base + offset + RecordFormat.headerSize, count: length)
                return .record(LogRecordView(sequence: sequence, position: at, timestamp: timestamp, unsafeBytes: payload))
            case .skip(_, let span):
                position.offset += UInt32(span)
            case .endOfSegment:
                guard position.segment < UInt32.max - 1 else { throw .invalidLayout(path: segment.path, reason: "last segment number") }
                position = LogPosition(segment: position.segment + 1, offset: UInt32(log.dataOffset))
                self.segment = nil
            case .open(_, let word):
                if let (kind, span) = RecordFormat.decode(word), kind == .writing,
                   span >= RecordFormat.headerSize, span % 8 == 0, offset + span <= segment.size {
                    if claimantIsGone(segment, at: offset) {
                        position.offset += UInt32(span) // a killed appender's claim
                        continue
                    }
                } else if kind(word) == .empty, let next = abandonedHole(segment, offset: offset) {
                    position.offset = UInt32(next)
                    continue
                }
                return .waiting(segment: segment, offset: offset, word: word)
            case .garbage(_, let word):
                let at = position
                skipDamage(in: segment, at: offset, claimedSpan: nil)
                throw .corruptRecord(position: at, sequence: nil, reason: "invalid record word 0x\(String(word, radix: 16))")
            }
        }
    }

    /// Moves past damage at `offset`: to the next plausible record slot, or
    /// else by the record's own span while that stays below the claim word,
    /// or else to the claim word's position (records continue there).
    private func skipDamage(in segment: SegmentFile, at offset: Int, claimedSpan: Int?) {
        Diagnostics.warning("skipped a corrupt log record", ["log": log.directory, "position": "\(position)"])
        Diagnostics.count("shm_log_corrupt_records_total", [("log", log.directory)])
        let bound = log.claimBound(in: segment)
        if let next = RecordWalker.resynchronize(segment, from: offset + RecordFormat.slotAlignment, after: nil, bound: bound) {
            position.offset = UInt32(next)
        } else if let span = claimedSpan, let bound, offset + span <= bound {
            position.offset = UInt32(offset + span)
        } else if let bound, bound < segment.size {
            position.offset = UInt32(max(bound, offset + RecordFormat.slotAlignment))
        } else if position.segment < UInt32.max - 1 {
            position = LogPosition(segment: position.segment + 1, offset: UInt32(log.dataOffset))
            self.segment = nil
        }
    }

    private func kind(_ word: UInt64) -> RecordFormat.Kind? { RecordFormat.decode(word)?.kind }

    /// Whether the appender that claimed the slot at `offset` is proven
    /// gone (its lease, from any pid namespace); asks at most every millisecond.
    private func claimantIsGone(_ segment: SegmentFile, at offset: Int) -> Bool {
        let appender = (segment.base + offset).load(fromByteOffset: RecordFormat.Offset.appender, as: UInt32.self)
        guard appender != 0 else { return false }
        let now = monotonicNanoseconds()
        if let (at, checked) = lastLivenessCheck, at == position, now &- checked < 1_000_000 { return false }
        lastLivenessCheck = (position, now)
        return ProcessIdentity(compact: appender).liveness == .dead
    }

    /// An empty slot that has stayed empty long enough below the claim word
    /// belongs to an appender killed right after claiming: the offset of the
    /// next record slot after it, if any.
    private func abandonedHole(_ segment: SegmentFile, offset: Int) -> Int? {
        let claim = log.meta.loadClaimPosition()
        guard claim > position else { return nil }
        if abandonedClaimTimeout > .zero {
            let now = monotonicNanoseconds()
            guard let (at, since) = holeSince, at == position else {
                holeSince = (position, now)
                return nil
            }
            guard now &- since >= abandonedClaimTimeout.nanoseconds else { return nil }
        }
        holeSince = nil
        if let next = RecordWalker.resynchronize(segment, from: offset + RecordFormat.slotAlignment, after: nil, bound: log.claimBound(in: segment)) { return next }
        // Nothing more in this segment and the claim word is past it: its
        // roller was killed before writing the end marker. Go on to the next.
        return claim.segment > segment.number ? segment.size : nil
    }

    /// The mapped segment at `position`, or nil if it does not exist yet.
    private func currentSegment() throws(LogError) -> SegmentFile? {
        if let segment, segment.number == position.segment { return segment }
        segment = nil
        do {
            let opened = try log.openSegment(position.segment, writable: false)
            segment = opened
            return opened
        } catch .notFound(_) {
            let numbers = log.segmentNumbers()
            guard let oldest = numbers.first, position.segment < oldest else {
                return nil // not created yet
            }
            let start = LogPosition(segment: oldest, offset: UInt32(log.dataOffset))
            switch onDeletedSegment {
            case .fail: throw .positionDeleted(position, oldestRetained: start)
            case .moveToOldest:
                position = start
                retentionJumps += 1
                return try currentSegment()
            }
        }
    }

    /// The next record if one is there, without waiting.
    public func tryNext() throws(LogError) -> LogRecord? {
        guard case .record(let view) = try poll() else { return nil }
        return LogRecord(sequence: view.sequence, position: view.position, timestamp: view.timestamp, bytes: Array(view.unsafeBytes))
    }

    /// The next record, waiting at most `timeout` (nil: for ever).
    public func next(timeout: Duration? = nil) throws(LogError) -> LogRecord {
        try withNext(timeout: timeout) { view in
            LogRecord(sequence: view.sequence, position: view.position, timestamp: view.timestamp, bytes: Array(view.unsafeBytes))
        }
    }

    /// Waits for the next record and hands it to `body` in place (no copy).
    public func withNext<R>(timeout: Duration? = nil, _ body: (LogRecordView) throws(LogError) -> R) throws(LogError) -> R {
        let end = timeout.map { monotonicNanoseconds() &+ $0.nanoseconds }
        while true {
            switch try poll() {
            case .record(let view):
                return try body(view)
            case .waiting(let segment, let offset, let word):
                let now = monotonicNanoseconds()
                if let end, now >= end { throw .timedOut(after: timeout) }
                guard let segment else {
                    // The next segment does not exist yet (the appender is rolling):
                    // a spinner keeps spinning, others look again in a millisecond.
                    switch waiter.strategy {
                    case .busySpin: CPU.relax()
                    case .yielding: CPU.yield()
                    case .spinThenPark, .block: sleepNanoseconds(1_000_000)
                    }
                    continue
                }
                // Has someone cut the file under us? What we read as "nothing
                // yet" may be zeros where records were. Checked before waiting,
                // and while waiting each time a slice passes.
                try segment.checkIntact()
                let word0 = segment.wordPointer(offset)
                var damage: LogError?
                // Wait until the slot changes (or a slice passes: segments
                // appear, holes time out), with this tailer's wait strategy.
                let slice = now &+ 20_000_000
                _ = waiter.wait(on: log.meta.parker, deadline: end.map { min($0, slice) } ?? slice, slice: 20_000_000) {
                    // SYNC POINT (Dekker): seq_cst load pairs with the appender's seq_cst store
                    // of the word in `publish` before its sleeper check.
                    word0.pointee.load(ordering: .sequentiallyConsistent) != word
                } keepWaiting: {
                    do throws(LogError) { try segment.checkIntact() } catch { damage = error; return false }
                    return true
                }
                if let damage { throw damage }
            }
        }
    }

    /// Records as they are appended, for `for try await`; ends with the task
    /// (cancellation wakes the waiting thread at once) or at the first error
    /// (a corrupt record: create a new sequence, the tailer continues after
    /// it). Each record is one hop through `AsyncBridge`; nothing polls.
    /// Take one sequence per tailer: the tailer is not safe to use from two
    /// tasks at once.
    public var records: AsyncThrowingStream<LogRecord, any Error> {
        let tailer = self
        return AsyncThrowingStream { continuation in
            let task = Task {
                do {
                    while true {
                        let record = try await AsyncBridge.wait(wakingOnCancel: [tailer.log.meta.parker], deadline: nil,
                                                                slice: .milliseconds(100)) {
                            (until: UInt64) throws(LogError) -> LogRecord? in
                            do throws(LogError) { return try tailer.next(timeout: AsyncBridge.remaining(until: until)) } catch {
                                if case .timedOut = error { return nil }
                                throw error
                            }
                        }
                        if let record { continuation.yield(record) }
                    }
                } catch is CancellationError {
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }
}

