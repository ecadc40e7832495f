import Synchronization
import ShmSystem
import ShmPrimitives

/// A persistent append-only log in a directory of memory-mapped segment
/// files: the technique of Kafka, RocketMQ and Chronicle Queue.
///
/// ```text
/// DIR/log.meta          configuration, the shared claim word, the tailers' parker
/// DIR/log.lock          serializes opening for append and recovery (flock)
/// DIR/appenders.lock    held shared by every live appender (flock)
/// DIR/0000000000.seg    segment files of `segmentSize` bytes, rolled when full
/// ```
///
/// Any number of processes append concurrently: an appender claims space
/// and a sequence number together with one 16-byte compare-and-swap on the
/// claim word in `log.meta`, writes its record in place, and publishes it
/// with one store of the record's first word. Tailers in any process read
/// the segments while they are written and sleep on a futex when they have
/// caught up. The first appender to open the log after every appender has
/// gone (a crash, a reboot) recovers it: it finds the last valid record by
/// checksum, closes holes left by killed appenders, truncates a torn tail
/// and resets the claim word.
public final class Log: @unchecked Sendable {
    public let directory: String
    let meta: MetaFile
    public var config: LogConfig { LogConfig(segmentSize: meta.segmentSize, indexGranularity: meta.indexGranularity) }

    var dataOffset: Int { SegmentFile.dataOffset(segmentSize: meta.segmentSize, granularity: meta.indexGranularity) }

    init(directory: String, meta: MetaFile) {
        self.directory = directory
        self.meta = meta
    }

    /// Creates a log in `directory` (created if missing; `mkdir(2)`); throws
    /// `.alreadyExists` if it holds one.
    public static func create(directory: String, config: LogConfig = LogConfig()) throws(LogError) -> Log {
        try config.validate()
        do { try FileSystem.makeDirectory(directory) } catch { throw .system(operation: "mkdir", path: directory, error) }
        let meta: MetaFile
        do {
            meta = try MetaFile.create(path: directory + "/log.meta", segmentSize: config.segmentSize,
                                       indexGranularity: config.indexGranularity)
        } catch .alreadyExists(_) {
            throw .alreadyExists(directory: directory)
        }
        let log = Log(directory: directory, meta: meta)
        _ = try SegmentFile.createOrOpen(directory: directory, number: 0, meta: meta, syncDirectory: true)
        return log
    }

    /// Opens the log in `directory` (`.notFound` if there is none). Opening
    /// reads; recovery happens when the first appender attaches.
    public static func open(directory: String) throws(LogError) -> Log {
        do { return Log(directory: directory, meta: try MetaFile(path: directory + "/log.meta")) }
        catch .notFound(_) { throw .notFound(directory: directory) }
    }

    /// Opens the log, or creates it with `config`.
    public static func openOrCreate(directory: String, config: LogConfig = LogConfig()) throws(LogError) -> Log {
        do { return try open(directory: directory) } catch .notFound(_) {}
        do { return try create(directory: directory, config: config) } catch .alreadyExists(_) { return try open(directory: directory) }
    }

    /// An appender (see `LogAppender`). The first one after all appenders
    /// have gone runs recovery.
    public func appender(durability: Durability = .none, timestamps: LogTimestamps = .precise) throws(LogError) -> LogAppender {
        try LogAppender(log: self, durability: durability, timestamps: timestamps)
    }

    /// The log's only appender: claims take no compare-and-swap (two plain
    /// stores of the claim word instead), so appends cost fewer locked
    /// instructions. Holds `appenders.lock` exclusively for its life; other
    /// appenders (in any process) get `.appendersBusy` until it closes.
    ///
    /// - Throws: `.appendersBusy` if other appenders are open.
    public func exclusiveAppender(durability: Durability = .none, timestamps: LogTimestamps = .precise) throws(LogError) -> LogAppender {
        try LogAppender(log: self, durability: durability, exclusive: true, timestamps: timestamps)
    }

    /// A tailer reading from `start`.
    public func tailer(from start: TailStart = .start, onDeletedSegment: DeletedSegmentPolicy = .moveToOldest,
                       waitStrategy: WaitStrategy = .default) throws(LogError) -> LogTailer {
        try LogTailer(log: self, start: start, onDeletedSegment: onDeletedSegment, waitStrategy: waitStrategy)
    }

    // MARK: Segments

    /// Segment numbers present, ascending.
    public func segmentNumbers() -> [UInt32] {
        FileSystem.entries(in: directory).compactMap(SegmentFile.number(fromName:)).sorted()
    }

    func segmentPath(_ number: UInt32) -> String { directory + "/" + SegmentFile.name(number) }

    func openSegment(_ number: UInt32, writable: Bool, repairing: Bool = false) throws(LogError) -> SegmentFile {
        try SegmentFile(path: segmentPath(number), number: number, meta: meta, writable: writable, repairing: repairing)
    }

    /// Where the next record will go, and its sequence number.
    public var nextPosition: (position: LogPosition, sequence: UInt64) { meta.loadClaim() }

    /// How far records may extend in `segment` by the claim word: its offset
    /// if it is in this segment, the whole segment if it is past it, nil if
    /// it is behind (a stale claim word after power loss).
    func claimBound(in segment: SegmentFile) -> Int? {
        let claim = meta.loadClaimPosition()
        if claim.segment == segment.number { return min(segment.size, Int(claim.offset)) }
        return claim.segment > segment.number ? segment.size : nil
    }

    /// The first intact record of a segment: (offset, sequence, timestamp).
    func firstRecord(of segment: SegmentFile) -> (offset: Int, sequence: UInt64, timestamp: UInt64)? {
        var offset = segment.dataOffset
        for _ in 0..<1024 {
            switch RecordWalker.step(segment, at: offset) {
            case .record(_, let length, let sequence, let timestamp, let intact):
                if intact { return (offset, sequence, timestamp) }
                offset += RecordFormat.span(payload: length)
            case .skip(_, let span): offset += span
            default: return nil
            }
        }
        return nil
    }

    // MARK: Lookup

    /// The position of the record with `sequence`, via the segments' first
    /// records and the sparse index (scans at most one index interval).
    public func position(ofSequence sequence: UInt64) throws(LogError) -> LogPosition {
        try locate(description: "with sequence \(sequence)") { $0.sequence <= sequence } exact: { s, _ in s == sequence } past: { s, _ in s > sequence }
    }

    /// The position of the first record with a timestamp at or after `time` (wall-clock ns).
    public func position(ofTime time: UInt64) throws(LogError) -> LogPosition {
        try locate(description: "at or after time \(time)") { $0.timestamp <= time } exact: { _, t in t >= time } past: { _, _ in false }
    }

    private func locate(description: String, notAfter: ((sequence: UInt64, timestamp: UInt64)) -> Bool,
                        exact: (UInt64, UInt64) -> Bool, past: (UInt64, UInt64) -> Bool) throws(LogError) -> LogPosition {
        let numbers = segmentNumbers()
        // The last segment whose first record is not after the target (segments are few: linear).
        var chosen: (SegmentFile, Int)?
        for number in numbers {
            guard let segment = try? openSegment(number, writable: false), let first = firstRecord(of: segment) else { continue }
            if notAfter((first.sequence, first.timestamp)) || chosen == nil { chosen = (segment, first.offset) } else { break }
        }
        guard var (segment, offset) = chosen else { throw .noSuchRecord(description) }
        for k in 0..<segment.indexEntries {
            guard let entry = segment.indexEntry(k) else { continue }
            if notAfter((entry.sequence, entry.timestamp)) {
                // Trust an entry only if it points at the record it names.
                if case .record(_, _, let sequence, _, true) = RecordWalker.step(segment, at: entry.offset), sequence == entry.sequence {
                    offset = max(offset, entry.offset)
                }
            } else { break }
        }
        // Scan forward, into later segments if needed.
        while true {
            switch RecordWalker.step(segment, at: offset) {
            case .record(_, let length, let sequence, let timestamp, let intact):
                if intact && exact(sequence, timestamp) { return LogPosition(segment: segment.number, offset: UInt32(offset)) }
                if intact && past(sequence, timestamp) { throw .noSuchRecord(description) }
                offset += RecordFormat.span(payload: length)
            case .skip(_, let span): offset += span
            case .endOfSegment:
                guard let next = numbers.first(where: { $0 > segment.number }), let s = try? openSegment(next, writable: false) else {
                    throw .noSuchRecord(description)
                }
                segment = s
                offset = s.dataOffset
            case .open(_, let word) where RecordFormat.decode(word)?.kind == .writing:
                throw .noSuchRecord(description + " (a record before it is still being written)")
            case .open, .garbage:
                // A hole or damage below the claim word: look past it.
                guard let next = RecordWalker.resynchronize(segment, from: offset + RecordFormat.slotAlignment, after: nil, bound: claimBound(in: segment)) else {
                    throw .noSuchRecord(description)
                }
                offset = next
            }
        }
    }

    /// The position of the oldest retained record slot.
    public var startPosition: LogPosition {
        let first = segmentNumbers().first ?? 0
        return LogPosition(segment: first, offset: UInt32(dataOffset))
    }
}
