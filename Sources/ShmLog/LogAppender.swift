import Synchronization
import ShmSystem
import ShmPrimitives

/// A record just appended: its sequence number, position and timestamp.
public struct AppendedRecord: Hashable, Sendable {
    public let sequence: UInt64
    public let position: LogPosition
    /// Wall-clock nanoseconds since 1970, taken when the space was claimed.
    public let timestamp: UInt64
}

/// Appends records to a log. Many appenders, in any processes, append to
/// one log at once. Use each appender from one thread at a time.
///
/// **Claiming space.** `log.meta` holds one 16-byte claim word: the next
/// position and the next sequence number. An appender advances both with a
/// double-width compare-and-swap (`CMPXCHG16B`), which gives it a range of
/// the segment and a sequence number no one else has; it marks the range
/// "writing" with its identity (lease), writes the record in place, computes the CRC32C
/// and publishes the record with one store of its first word. A record
/// that does not fit the rest of a segment claims the start of the next
/// one; its appender closes the old segment with an end marker and creates
/// the next segment file if no one has yet.
///
/// Every live appender holds `appenders.lock` shared (`flock`): the first
/// appender when none is alive takes it exclusively for a moment and
/// recovers the log (`recovery`).
public final class LogAppender: @unchecked Sendable {
    public let log: Log
    public let durability: Durability
    /// What the recovery run at this appender's opening did (nil: other
    /// appenders were alive, the log needed none).
    public let recovery: RecoveryReport?

    let appendersLock: FileLock
    /// This process as the record header names it (`ProcessIdentity.compact`).
    let appenderID: UInt32
    var segment: SegmentFile?

    /// What the append path reads on every record, behind a pointer (no
    /// exclusivity checks, no reference counting).
    struct Hot {
        var base: UnsafeMutableRawPointer
        var number: UInt32 = .max
        var logDataOffset: Int
        /// log2 of the index granularity (a power of two, checked when the
        /// log's meta file is opened): a shift, not two 64-bit divisions per append.
        var granularityShift: Int
        let segmentSize: Int
        let claim: UnsafeMutablePointer<Atomic<WordPair>>
        let parkingTailers: UnsafeMutablePointer<Atomic<UInt32>>
        let parker: Parker
        /// Pages up to here were made present and writable.
        var prefaulted = 0
        /// The only appender of the log (`appenders.lock` held exclusively):
        /// claims need no compare-and-swap.
        let exclusive: Bool
        /// The claim word as this exclusive appender last stored it.
        var cachedClaim = WordPair(first: 0, second: 0)
        /// Stamp records from the coarse clock (`LogTimestamps.coarse`).
        let coarseClock: Bool
        /// `durability` is not `.none`: appends track what to msync.
        let syncs: Bool

        @inline(__always)
        func timestamp() -> UInt64 { coarseClock ? coarseWallClockNanoseconds() : wallClockNanoseconds() }
    }
    let hot: UnsafeMutablePointer<Hot>
    /// Bytes written and not yet synced: segment and offset range.
    var dirty: (segment: SegmentFile, start: Int, end: Int)?
    var unsynced = 0
    var lastSync = monotonicNanoseconds()

    /// How this appender stamps its records.
    public let timestamps: LogTimestamps

    init(log: Log, durability: Durability, exclusive: Bool = false, timestamps: LogTimestamps = .precise) throws(LogError) {
        if case .everyRecords(let n) = durability, n < 1 { throw .invalidConfiguration("sync every \(n) records") }
        self.log = log
        self.durability = durability
        self.timestamps = timestamps
        appenderID = ProcessIdentity.current.compact
        hot = .allocate(capacity: 1)
        hot.initialize(to: Hot(base: UnsafeMutableRawPointer(bitPattern: 8)!, logDataOffset: log.dataOffset,
                               granularityShift: log.meta.indexGranularity.trailingZeroBitCount, segmentSize: log.meta.segmentSize, claim: log.meta.claim,
                               parkingTailers: log.meta.parkingTailers, parker: log.meta.parker, exclusive: exclusive,
                               coarseClock: timestamps == .coarse, syncs: durability != .none))
        let serial = try LogAppender.lockFile(log.directory + "/log.lock")
        try LogAppender.lockBounded(serial, .exclusive)
        appendersLock = try LogAppender.lockFile(log.directory + "/appenders.lock")
        // `recovery` is assigned last: if a check throws, the object is not
        // fully initialized, so `deinit` (which deallocates `hot`) does not
        // run and the catch deallocates it once; the locks close with their
        // `FileLock`s.
        var recovered: RecoveryReport?
        do throws(LogError) {
            if try LogAppender.tryLock(appendersLock, .exclusive) {
                // No appender is alive: nobody is writing; repair what the last ones left.
                recovered = try log.recover()
            } else if exclusive {
                throw .appendersBusy(directory: log.directory, exclusiveWanted: true)
            }
            if exclusive {
                // Kept exclusive for the appender's life: no other appender can open.
                // SYNC POINT: acquire pairs with the last appenders' CAS of the claim word (and recovery's store).
                hot.pointee.cachedClaim = log.meta.claim.pointee.load(ordering: .acquiring)
            } else if !(try LogAppender.tryLock(appendersLock, .shared)) {
                // Shared from now on (a conversion: safe while we hold log.lock); refused
                // only if an exclusive appender is alive.
                throw .appendersBusy(directory: log.directory, exclusiveWanted: false)
            }
        } catch {
            hot.deallocate()
            throw error
        }
        recovery = recovered
        serial.unlock()
        if let report = recovered, report.repairedAnything {
            Diagnostics.notice("recovered the log after appenders died", [
                "log": log.directory, "abandonedClaims": "\(report.abandonedClaims)",
                "corruptRecordsKept": "\(report.corruptRecordsKept)", "corruptRecordsSkipped": "\(report.corruptRecordsSkipped)",
                "truncatedBytes": "\(report.truncatedBytes)", "cutSegments": "\(report.cutSegments)",
            ])
            Diagnostics.count("shm_log_recoveries_total", [("log", log.directory)])
        }
    }

    deinit {
        try? flush()
        hot.deallocate()
    }

    static func lockFile(_ path: String) throws(LogError) -> FileLock {
        do { return try FileLock(path: path) } catch { throw .system(operation: "open", path: path, error) }
    }

    static func tryLock(_ lock: FileLock, _ mode: FileLock.Mode) throws(LogError) -> Bool {
        do { return try lock.tryLock(mode) } catch { throw .system(operation: "flock", path: lock.path, error) }
    }

    /// Takes `lock` within 10 s (its holder is opening or recovering the log).
    static func lockBounded(_ lock: FileLock, _ mode: FileLock.Mode) throws(LogError) {
        let acquired: Bool
        do { acquired = try lock.lock(mode, timeout: .seconds(10)) } catch { throw .system(operation: "flock", path: lock.path, error) }
        if !acquired { throw .timedOut(.seconds(10)) }
    }

    // MARK: Appending

    /// Appends a copy of `bytes` as one record.
    @discardableResult
    public func append(_ bytes: UnsafeRawBufferPointer) throws(LogError) -> AppendedRecord {
        let (offset, sequence) = try claimSpace(length: bytes.count)
        if let source = bytes.baseAddress {
            (hot.pointee.base + offset + RecordFormat.headerSize).copyMemory(from: source, byteCount: bytes.count)
        }
        return try publish(offset: offset, length: bytes.count, sequence: sequence, timestamp: hot.pointee.timestamp())
    }

    /// Appends a copy of `bytes` as one record.
    @discardableResult
    public func append(_ bytes: [UInt8]) throws(LogError) -> AppendedRecord {
        try bytes.withUnsafeBytes { b in Result { () throws(LogError) in try append(b) } }.get()
    }

    /// Appends the UTF-8 bytes of `text` as one record.
    @discardableResult
    public func append(_ text: String) throws(LogError) -> AppendedRecord {
        var text = text
        return try text.withUTF8 { b in Result { () throws(LogError) in try append(UnsafeRawBufferPointer(b)) } }.get()
    }

    /// Appends a record with the sequence number and timestamp it has in the
    /// log this one replicates (the replica's appender; see ShmBridge's
    /// log replication). Numbers the source skipped (its aborted claims)
    /// become skip records here too, so `verify` finds the same structure;
    /// an empty log starts at the source's first number (a trimmed source).
    ///
    /// - Throws: `.replicaOutOfOrder` when `sequence` is behind this log's
    ///   next number (the record is here already: callers skip it) or
    ///   another appender took it; the usual append errors.
    @discardableResult
    public func appendReplicated(_ bytes: UnsafeRawBufferPointer, sequence: UInt64, timestamp: UInt64) throws(LogError) -> AppendedRecord {
        let claimWord = hot.pointee.claim
        // SYNC POINT: acquire pairs with the appenders' CAS of the claim word.
        let current = claimWord.pointee.load(ordering: .acquiring)
        guard UInt64(current.second) <= sequence else {
            throw .replicaOutOfOrder(directory: log.directory, next: UInt64(current.second), offered: sequence)
        }
        // A log nothing was ever appended to starts at `sequence`, in its
        // second segment (the first holds only an end marker), so that it
        // reads as a trimmed log: `verify` expects sequence 1 in segment 0.
        let start = LogPosition(packed: UInt64(current.first))
        if current.second == 1, sequence > 1, start == log.startPosition {
            let next = LogPosition(segment: start.segment &+ 1, offset: UInt32(log.dataOffset))
            _ = try segment(next.segment)
            let desired = WordPair(first: UInt(next.packed), second: UInt(sequence))
            // SYNC POINT: acquiring-and-releasing CAS pairs with the other appenders' CAS in `claimSpace`.
            if claimWord.pointee.compareExchange(expected: current, desired: desired, ordering: .acquiringAndReleasing).exchanged {
                if hot.pointee.exclusive { hot.pointee.cachedClaim = desired }
                try closeSegment(at: start, mapped: nil)
            }
        }
        while true {
            if log.meta.loadClaim().sequence < sequence {
                // The source skipped this number: an empty claim dropped leaves a skip record, as there.
                _ = try claim(count: 0)
                continue
            }
            var claimed = try claim(count: bytes.count)
            guard claimed.sequence == sequence else {
                throw .replicaOutOfOrder(directory: log.directory, next: claimed.sequence, offered: sequence)
            }
            if let source = bytes.baseAddress, bytes.count > 0 {
                claimed.unsafeBytes.baseAddress!.copyMemory(from: source, byteCount: bytes.count)
            }
            claimed.timestamp = timestamp
            return try claimed.commit()
        }
    }

    /// Claims room for a record of `count` bytes to be written in place
    /// (`unsafeBytes`); `commit()` publishes it, `abort()` (or dropping the
    /// claim) leaves a skip that tailers step over — the ring's claim shape.
    ///
    /// - Throws: `.recordTooLarge` past the segment's room, `.appendersBusy`,
    ///   file errors while rolling to a new segment.
    public func claim(count: Int) throws(LogError) -> LogClaim {
        let (offset, sequence) = try claimSpace(length: count)
        return LogClaim(appender: self, segment: segment!, offset: offset, length: count, sequence: sequence,
                        timestamp: hot.pointee.timestamp())
    }

    @available(*, deprecated, renamed: "claim(count:)")
    public func claim(length: Int) throws(LogError) -> LogClaim { try claim(count: length) }

    /// Claims `length` bytes and a sequence number with one 16-byte CAS (two
    /// plain stores for the exclusive appender); leaves `hot` describing the
    /// segment that holds the claim.
    ///
    /// This is the common case inlined into `append`: the claim lands in the
    /// segment already mapped. Anything else — a roll to the next segment,
    /// the first claim, a length past the segment, a claim word that fails
    /// its checks — goes to `claimSpaceInFull`, which throws the errors.
    @inline(__always)
    func claimSpace(length: Int) throws(LogError) -> (offset: Int, sequence: UInt64) {
        let h = hot
        let segmentSize = h.pointee.segmentSize
        if length >= 0, length <= segmentSize {
            // Segments are at most 1 GiB (`LogConfig`): these sums neither overflow nor leave UInt32.
            let span = RecordFormat.span(checkedPayload: length)
            let claimWord = h.pointee.claim
            let exclusive = h.pointee.exclusive
            // SYNC POINT: acquire pairs with other appenders' CAS below (and in `claimSpaceInFull`).
            var expected = exclusive ? h.pointee.cachedClaim : claimWord.pointee.load(ordering: .acquiring)
            while true {
                let at = LogPosition(packed: UInt64(expected.first))
                // The checks of `claimSpaceInFull`, and the segment must be the mapped one
                // (`number` is .max before the first claim: the range check excludes it).
                guard at.segment == h.pointee.number, at.segment < UInt32.max - 1, Int(at.offset) >= h.pointee.logDataOffset,
                      at.offset % 8 == 0, Int(at.offset) &+ span <= segmentSize else { break }
                let desired = WordPair(first: UInt(LogPosition(segment: at.segment, offset: at.offset &+ UInt32(truncatingIfNeeded: span)).packed),
                                       second: expected.second &+ 1)
                if exclusive {
                    storeExclusiveClaim(desired)
                } else {
                    // SYNC POINT: acquiring-and-releasing CAS pairs with the other appenders' CAS and loads of the claim word.
                    let (done, actual) = claimWord.pointee.compareExchange(expected: expected, desired: desired, ordering: .acquiringAndReleasing)
                    if !done { expected = actual; continue }
                }
                markWriting(offset: Int(at.offset), span: span)
                return (Int(at.offset), UInt64(expected.second))
            }
        }
        return try claimSpaceInFull(length: length)
    }

    /// The exclusive appender's claim: two plain 8-byte stores instead of a
    /// CAS. Tailers read only the position half (`loadClaimPosition`); a
    /// reader of the whole pair may see the new sequence with the old
    /// position for an instant (only informational readers do).
    @inline(__always)
    func storeExclusiveClaim(_ desired: WordPair) {
        let halves = UnsafeMutablePointer<Atomic<UInt64>>(OpaquePointer(hot.pointee.claim))
        halves[1].store(UInt64(desired.second), ordering: .relaxed)
        // SYNC POINT: release pairs with the tailers' acquire load of the position (`loadClaimPosition`).
        halves[0].store(UInt64(desired.first), ordering: .releasing)
        hot.pointee.cachedClaim = desired
    }

    /// Marks a claimed range "writing" with this appender's identity (its lease).
    @inline(__always)
    func markWriting(offset: Int, span: Int) {
        let record = hot.pointee.base + offset
        record.storeBytes(of: appenderID, toByteOffset: RecordFormat.Offset.appender, as: UInt32.self)
        UnsafeMutablePointer<Atomic<UInt64>>(OpaquePointer(record)).pointee
            .store(RecordFormat.word(.writing, length: span), ordering: .relaxed)
    }

    /// `claimSpace` in full: checks, maps or creates segments, rolls over.
    @inline(never)
    func claimSpaceInFull(length: Int) throws(LogError) -> (offset: Int, sequence: UInt64) {
        let segmentSize = hot.pointee.segmentSize, dataOffset = hot.pointee.logDataOffset
        guard length >= 0, length <= segmentSize else {
            throw .recordTooLarge(bytes: length, maximum: segmentSize - dataOffset - RecordFormat.headerSize)
        }
        let span = RecordFormat.span(payload: length)
        guard span <= segmentSize - dataOffset else {
            throw .recordTooLarge(bytes: length, maximum: segmentSize - dataOffset - RecordFormat.headerSize)
        }
        let claimWord = hot.pointee.claim
        let exclusive = hot.pointee.exclusive
        // A 16-byte atomic load is a locked CMPXCHG16B. Starting from a guess
        // (our last CAS's value) instead was tried: appends got no faster in
        // the median, and a tailer in another process saw records ~6 µs
        // later (measured twice); so the claim word is loaded — except by an
        // exclusive appender, whose own last store is the value.
        // SYNC POINT: acquire pairs with other appenders' CAS below.
        var expected = exclusive ? hot.pointee.cachedClaim : claimWord.pointee.load(ordering: .acquiring)
        var position: LogPosition
        var rolledFrom: LogPosition?
        var previous: SegmentFile?
        while true {
            let at = LogPosition(packed: UInt64(expected.first))
            // Never trust the claim word: a damaged one must not send us into the header.
            guard Int(at.offset) >= dataOffset, at.offset % 8 == 0, Int(at.offset) <= segmentSize, at.segment < UInt32.max - 1 else {
                throw .invalidLayout(path: log.directory + "/log.meta", reason: "claim word points at \(at)")
            }
            var next: LogPosition
            if Int(at.offset) + span <= segmentSize {
                position = at
                next = LogPosition(segment: at.segment, offset: at.offset &+ UInt32(span))
                rolledFrom = nil
            } else {
                position = LogPosition(segment: at.segment &+ 1, offset: UInt32(dataOffset))
                next = LogPosition(segment: at.segment &+ 1, offset: UInt32(dataOffset + span))
                rolledFrom = at
            }
            if position.segment != hot.pointee.number {
                // Map (or create) the segment before claiming in it, so that
                // between our claim and its "writing" mark there are only a
                // few instructions for a SIGKILL to fall into: a claim killed
                // there leaves a hole tailers must wait out.
                if let current = segment, current.number == at.segment { previous = current }
                _ = try segment(position.segment)
                // SYNC POINT: acquire pairs with other appenders' CAS below.
                if !exclusive { expected = claimWord.pointee.load(ordering: .acquiring) }
                continue
            }
            let desired = WordPair(first: UInt(next.packed), second: expected.second &+ 1)
            if exclusive {
                storeExclusiveClaim(desired)
                break
            }
            // SYNC POINT: acquiring-and-releasing CAS pairs with the other appenders' CAS and loads of the claim word.
            let (done, actual) = claimWord.pointee.compareExchange(expected: expected, desired: desired, ordering: .acquiringAndReleasing)
            if done { break }
            expected = actual
        }
        markWriting(offset: Int(position.offset), span: span)
        if let rolledFrom { try closeSegment(at: rolledFrom, mapped: previous) }
        return (Int(position.offset), UInt64(expected.second))
    }

    /// Makes `segment` the current one.
    func adopt(_ opened: SegmentFile) {
        if let dirty, dirty.segment !== opened { try? syncDirty() }
        segment = opened
        hot.pointee.base = opened.base
        hot.pointee.number = opened.number
        hot.pointee.prefaulted = opened.dataOffset
    }

    /// The segment file `number`, created if this appender is the first to need it.
    func segment(_ number: UInt32) throws(LogError) -> SegmentFile {
        if let segment, segment.number == number { return segment }
        let opened = try SegmentFile.createOrOpen(directory: log.directory, number: number, meta: log.meta,
                                                  syncDirectory: durability != .none)
        if let dirty, dirty.segment !== opened { try syncDirty() }
        segment = opened
        hot.pointee.base = opened.base
        hot.pointee.number = number
        hot.pointee.prefaulted = opened.dataOffset
        return opened
    }

    /// Marks the unused end of a segment we rolled away from (unless
    /// retention has deleted it meanwhile: it is never re-created).
    func closeSegment(at position: LogPosition, mapped: SegmentFile?) throws(LogError) {
        let old: SegmentFile
        if let mapped, mapped.number == position.segment {
            old = mapped
        } else if let segment, segment.number == position.segment {
            old = segment
        } else {
            do { old = try log.openSegment(position.segment, writable: true) } catch .notFound(_) { return }
        }
        if Int(position.offset) + RecordFormat.wordSize <= old.size {
            // SYNC POINT: seq_cst store releases the marker to the tailers'
            // acquire load of the word (and orders the sleeper check after it).
            old.wordPointer(Int(position.offset)).pointee.store(RecordFormat.word(.end, length: 0), ordering: .sequentiallyConsistent)
            log.meta.parker.wakeIfSleeping(count: Int32.max)
        }
    }

    /// Publishes a written claim.
    func commit(_ claim: borrowing LogClaim) throws(LogError) -> AppendedRecord {
        // Publish through the claim's own mapping (never reopen or re-create it).
        if claim.segment.number != hot.pointee.number { adopt(claim.segment) }
        return try publish(offset: claim.offset, length: claim.byteCount, sequence: claim.sequence, timestamp: claim.timestamp)
    }

    /// Fills in the header of the claimed record at `offset` of the current
    /// segment, publishes it with one store, then indexes and syncs it.
    @inline(__always)
    func publish(offset: Int, length: Int, sequence: UInt64, timestamp: UInt64) throws(LogError) -> AppendedRecord {
        let h = hot
        let record = h.pointee.base + offset
        record.storeBytes(of: sequence, toByteOffset: RecordFormat.Offset.sequence, as: UInt64.self)
        record.storeBytes(of: timestamp, toByteOffset: RecordFormat.Offset.timestamp, as: UInt64.self)
        record.storeBytes(of: RecordFormat.checksum(record: UnsafeRawPointer(record), length: length),
                          toByteOffset: RecordFormat.Offset.checksum, as: UInt32.self)
        let word = UnsafeMutablePointer<Atomic<UInt64>>(OpaquePointer(record))
        if h.pointee.parkingTailers.pointee.load(ordering: .relaxed) == 0 {
            // SYNC POINT: release pairs with the tailers' acquire load of the word.
            word.pointee.store(RecordFormat.word(.data, length: length), ordering: .releasing)
        } else {
            // SYNC POINT: seq_cst store releases the record to the tailers'
            // acquire load of its word, and orders our sleeper check after it
            // (Dekker with `Parker.sleep` in the tailer).
            word.pointee.store(RecordFormat.word(.data, length: length), ordering: .sequentiallyConsistent)
            h.pointee.parker.wakeIfSleeping(count: Int32.max)
        }
        // `length` was checked against the segment size when it was claimed
        // (and `offset` lies inside the segment): no sum below can overflow.
        let span = RecordFormat.span(checkedPayload: length)
        // Index entries whose boundary falls in this record (most records own none).
        let start = offset &- h.pointee.logDataOffset, shift = h.pointee.granularityShift
        if start == 0 || (start &+ span &- 1) &>> shift != (start &- 1) &>> shift {
            indexRecord(offset: offset, span: span, sequence: sequence, timestamp: timestamp)
        }
        if h.pointee.syncs { try made(range: offset..<offset &+ span) }
        // (PREFETCHW of lines ahead was tried: it delayed tailers in other
        // processes seeing our records by ~20 µs on this VM. Not used.)
        if offset &+ span &+ LogAppender.prefaultDistance > h.pointee.prefaulted { prefault() }
        return AppendedRecord(sequence: sequence, position: LogPosition(segment: h.pointee.number, offset: UInt32(truncatingIfNeeded: offset)),
                              timestamp: timestamp)
    }

    /// Writes the index entries a record owns (out of line: one record in a
    /// granularity's worth does).
    @inline(never)
    func indexRecord(offset: Int, span: Int, sequence: UInt64, timestamp: UInt64) {
        segment!.indexRecord(offset: offset, span: span, sequence: sequence, timestamp: timestamp)
    }

    /// How far ahead of the write position pages are made present and
    /// writable, and in which steps (`madvise(MADV_POPULATE_WRITE)`): a first
    /// write to a page of a shared file mapping faults twice (the page, then
    /// dirty tracking); done ahead, appends do not pay it.
    static let prefaultDistance = 512 << 10, prefaultStep = 128 << 10

    @inline(never)
    func prefault() {
        let h = hot
        guard let segment, h.pointee.prefaulted < segment.size else { return }
        let length = min(LogAppender.prefaultStep, segment.size - h.pointee.prefaulted)
        let start = h.pointee.prefaulted & ~4095
        // MADV_POPULATE_WRITE (Linux 5.14); an older kernel refuses it and appends fault as they go.
        try? segment.file.mapping.advise(.populateWrite, range: start..<(start + length))
        h.pointee.prefaulted = start + length
    }

    /// Gives up a claim: tailers step over it.
    func abandon(_ claim: borrowing LogClaim) {
        let span = RecordFormat.span(payload: claim.byteCount)
        // SYNC POINT: seq_cst store releases the skip to the tailers' acquire load of the
        // word, and orders the sleeper check after it (Dekker with `Parker.sleep`).
        claim.segment.wordPointer(claim.offset).pointee.store(RecordFormat.word(.skip, length: span), ordering: .sequentiallyConsistent)
        log.meta.parker.wakeIfSleeping(count: Int32.max)
    }

    // MARK: Durability

    private func made(range: Range<Int>) throws(LogError) {
        guard let segment else { return }
        switch durability {
        case .none:
            return
        case .everyAppend:
            try segment.sync(range)
            return
        case .everyRecords, .interval:
            if let d = dirty, d.segment === segment {
                dirty = (segment, min(d.start, range.lowerBound), max(d.end, range.upperBound))
            } else {
                if dirty != nil { try syncDirty() }
                dirty = (segment, range.lowerBound, range.upperBound)
            }
            unsynced += 1
            if case .everyRecords(let n) = durability, unsynced >= n { try syncDirty() }
            if case .interval(let t) = durability, monotonicNanoseconds() &- lastSync >= t.nanoseconds { try syncDirty() }
        }
    }

    private func syncDirty() throws(LogError) {
        guard let d = dirty else { return }
        dirty = nil
        unsynced = 0
        lastSync = monotonicNanoseconds()
        try d.segment.sync(d.start..<d.end)
    }

    /// Makes every record this appender wrote durable now (`msync(MS_SYNC)`).
    public func flush() throws(LogError) { try syncDirty() }
}

/// Space claimed in a log, to be written in place and committed. Dropping
/// it uncommitted leaves a skip record.
public struct LogClaim: ~Copyable {
    let appender: LogAppender
    let segment: SegmentFile
    let offset: Int
    let byteCount: Int
    /// The record's sequence number (fixed at the claim).
    public let sequence: UInt64
    /// Set at the claim; a replica's appender sets the source's.
    var timestamp: UInt64
    private var done = false

    init(appender: LogAppender, segment: SegmentFile, offset: Int, length: Int, sequence: UInt64, timestamp: UInt64) {
        self.appender = appender
        self.segment = segment
        self.offset = offset
        self.byteCount = length
        self.sequence = sequence
        self.timestamp = timestamp
    }

    /// The record's payload, in the mapped segment: write it before
    /// `commit` (valid until commit or abort).
    public var unsafeBytes: UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: segment.base + offset + RecordFormat.headerSize, count: byteCount)
    }

    /// Bytes claimed.
    public var count: Int { byteCount }

    @available(*, deprecated, renamed: "count")
    public var length: Int { byteCount }

    @available(*, deprecated, renamed: "unsafeBytes")
    public var buffer: UnsafeMutableRawBufferPointer { unsafeBytes }

    /// Publishes the record to tailers (and syncs it per the durability policy).
    @discardableResult
    public consuming func commit() throws(LogError) -> AppendedRecord {
        let record = try appender.commit(self) // on an error before publication, deinit abandons the claim
        done = true
        return record
    }

    /// Gives the claim up: tailers step over it (the same as dropping it;
    /// its sequence number stays unused).
    public consuming func abort() {}

    deinit { if !done { appender.abandon(self) } }
}
