#if canImport(Glibc)
import Glibc
#endif
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
/// "writing" with its pid, writes the record in place, computes the CRC32C
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

    let appendersLock: Int32
    let pid: UInt32
    var segment: SegmentFile?
    /// Bytes written and not yet synced: segment and offset range.
    var dirty: (segment: SegmentFile, start: Int, end: Int)?
    var unsynced = 0
    var lastSync = monotonicNanoseconds()

    init(log: Log, durability: Durability) throws(LogError) {
        if case .everyRecords(let n) = durability, n < 1 { throw .invalidConfiguration("sync every \(n) records") }
        self.log = log
        self.durability = durability
        pid = UInt32(truncatingIfNeeded: getpid())
        let serial = try LogAppender.lockFile(log.directory + "/log.lock")
        defer { closeOwnedDescriptor(serial) }
        try LogAppender.flockBounded(serial, LOCK_EX, path: log.directory + "/log.lock")
        appendersLock = try LogAppender.lockFile(log.directory + "/appenders.lock")
        do {
            if flock(appendersLock, LOCK_EX | LOCK_NB) == 0 {
                // No appender is alive: nobody is writing; repair what the last ones left.
                recovery = try log.recover()
            } else {
                recovery = nil
            }
            // Shared from now on (a conversion: safe while we hold log.lock).
            try LogAppender.flockBounded(appendersLock, LOCK_SH, path: log.directory + "/appenders.lock")
        } catch {
            closeOwnedDescriptor(appendersLock)
            throw error
        }
        _ = flock(serial, LOCK_UN)
    }

    deinit {
        try? flush()
        closeOwnedDescriptor(appendersLock) // releases the flock
    }

    static func lockFile(_ path: String) throws(LogError) -> Int32 {
        switch valueOrErrno({ open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644) }) {
        case .success(let fd): return fd
        case .failure(let e): throw .system(operation: "open", path: path, e)
        }
    }

    /// `flock` with a 10 s bound (a lock holder is opening or recovering).
    static func flockBounded(_ fd: Int32, _ operation: Int32, path: String) throws(LogError) {
        let end = monotonicNanoseconds() + 10_000_000_000
        while flock(fd, operation | LOCK_NB) != 0 {
            let e = Errno.current
            guard e == .tryAgain || e == .interrupted else { throw .system(operation: "flock", path: path, e) }
            if monotonicNanoseconds() > end { throw .timedOut(.seconds(10)) }
            usleep(1000)
        }
    }

    // MARK: Appending

    /// Appends a copy of `bytes` as one record.
    @discardableResult
    public func append(_ bytes: UnsafeRawBufferPointer) throws(LogError) -> AppendedRecord {
        let claim = try claim(length: bytes.count)
        if bytes.count > 0 { claim.buffer.copyMemory(from: bytes) }
        return try claim.commit()
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

    /// Claims room for a record of `length` bytes to be written in place;
    /// `commit()` publishes it. A claim dropped without `commit` becomes a
    /// skip that tailers step over.
    public func claim(length: Int) throws(LogError) -> LogClaim {
        let span = RecordFormat.span(payload: length)
        let capacity = log.meta.segmentSize - log.dataOffset
        guard length >= 0, span <= capacity else { throw .recordTooLarge(bytes: length, maximum: capacity - RecordFormat.headerSize) }
        let claimWord = log.meta.claim
        // SYNC POINT: acquire pairs with other appenders' CAS below.
        var expected = claimWord.pointee.load(ordering: .acquiring)
        var position: LogPosition
        var rolledFrom: LogPosition?
        while true {
            let at = LogPosition(packed: UInt64(expected.first))
            var next: LogPosition
            if Int(at.offset) + span <= log.meta.segmentSize {
                position = at
                next = LogPosition(segment: at.segment, offset: at.offset + UInt32(span))
                rolledFrom = nil
            } else {
                position = LogPosition(segment: at.segment + 1, offset: UInt32(log.dataOffset))
                next = LogPosition(segment: at.segment + 1, offset: UInt32(log.dataOffset + span))
                rolledFrom = at
            }
            let desired = WordPair(first: UInt(next.packed), second: expected.second &+ 1)
            // SYNC POINT: acquiring-and-releasing CAS pairs with the other appenders' CAS and loads of the claim word.
            let (done, actual) = claimWord.pointee.compareExchange(expected: expected, desired: desired, ordering: .acquiringAndReleasing)
            if done { break }
            expected = actual
        }
        let sequence = UInt64(expected.second)
        if let rolledFrom { try closeSegment(at: rolledFrom) }
        let segment = try segment(position.segment)
        let record = segment.base + Int(position.offset)
        record.storeBytes(of: pid, toByteOffset: 12, as: UInt32.self)
        segment.wordPointer(Int(position.offset)).pointee.store(RecordFormat.word(.writing, length: span), ordering: .relaxed)
        return LogClaim(appender: self, segment: segment, offset: Int(position.offset), length: length, sequence: sequence,
                        timestamp: wallClockNanoseconds())
    }

    /// The segment file `number`, created if this appender is the first to need it.
    func segment(_ number: UInt32) throws(LogError) -> SegmentFile {
        if let segment, segment.number == number { return segment }
        let opened = try SegmentFile.createOrOpen(directory: log.directory, number: number, meta: log.meta,
                                                  syncDirectory: durability != .none)
        if let dirty, dirty.segment !== opened { try syncDirty() }
        segment = opened
        return opened
    }

    /// Marks the unused end of a segment we rolled away from.
    func closeSegment(at position: LogPosition) throws(LogError) {
        let old = try segment(position.segment)
        if Int(position.offset) + 8 <= old.size {
            // SYNC POINT: release pairs with the tailers' acquire load of the word.
            old.wordPointer(Int(position.offset)).pointee.store(RecordFormat.word(.end, length: 0), ordering: .sequentiallyConsistent)
            log.meta.parker.wakeIfSleeping(count: Int32.max)
        }
    }

    /// Publishes a written claim.
    func commit(_ claim: borrowing LogClaim) throws(LogError) -> AppendedRecord {
        let segment = claim.segment, offset = claim.offset
        let record = segment.base + offset
        record.storeBytes(of: claim.sequence, toByteOffset: 16, as: UInt64.self)
        record.storeBytes(of: claim.timestamp, toByteOffset: 24, as: UInt64.self)
        record.storeBytes(of: RecordFormat.checksum(record: UnsafeRawPointer(record), length: claim.length), toByteOffset: 8, as: UInt32.self)
        // SYNC POINT: seq_cst store releases the record to the tailers' acquire
        // load of its word, and orders our sleeper check after it (Dekker with
        // `Parker.sleep` in the tailer).
        segment.wordPointer(offset).pointee.store(RecordFormat.word(.data, length: claim.length), ordering: .sequentiallyConsistent)
        log.meta.parker.wakeIfSleeping(count: Int32.max)
        let span = RecordFormat.span(payload: claim.length)
        for k in segment.indexSlots(offset: offset, span: span) {
            segment.setIndexEntry(k, offset: offset, sequence: claim.sequence, timestamp: claim.timestamp)
        }
        try made(segment: segment, range: offset..<offset + span)
        return AppendedRecord(sequence: claim.sequence, position: LogPosition(segment: segment.number, offset: UInt32(offset)),
                              timestamp: claim.timestamp)
    }

    /// Gives up a claim: tailers step over it.
    func abandon(_ claim: borrowing LogClaim) {
        let span = RecordFormat.span(payload: claim.length)
        claim.segment.wordPointer(claim.offset).pointee.store(RecordFormat.word(.skip, length: span), ordering: .sequentiallyConsistent)
        log.meta.parker.wakeIfSleeping(count: Int32.max)
    }

    // MARK: Durability

    private func made(segment: SegmentFile, range: Range<Int>) throws(LogError) {
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
    public let length: Int
    public let sequence: UInt64
    let timestamp: UInt64
    private var done = false

    init(appender: LogAppender, segment: SegmentFile, offset: Int, length: Int, sequence: UInt64, timestamp: UInt64) {
        self.appender = appender
        self.segment = segment
        self.offset = offset
        self.length = length
        self.sequence = sequence
        self.timestamp = timestamp
    }

    /// The record's payload, in the mapped segment.
    public var buffer: UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: segment.base + offset + RecordFormat.headerSize, count: length)
    }

    /// Publishes the record to tailers (and syncs it per the durability policy).
    @discardableResult
    public consuming func commit() throws(LogError) -> AppendedRecord {
        done = true
        return try appender.commit(self)
    }

    deinit { if !done { appender.abandon(self) } }
}
