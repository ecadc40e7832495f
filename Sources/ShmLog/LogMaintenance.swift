import ShmSystem

/// A summary of a log (`Log.stat()`).
public struct LogStats: Sendable, Equatable {
    public var segments: Int
    /// Bytes of segment files on disk (allocated size).
    public var bytes: Int
    public var records: Int
    public var firstSequence: UInt64?
    public var lastSequence: UInt64?
    /// Wall-clock nanoseconds of the first and last record.
    public var firstTime: UInt64?
    public var lastTime: UInt64?
    public var nextPosition: LogPosition
    public var segmentSize: Int
    /// Damage seen without checksums (`verify` tells all): unreadable,
    /// missing or cut segments, sequence gaps no skipped claim explains.
    public var warnings: [String] = []
}

/// What `Log.verify()` found.
public struct LogVerification: Sendable, Equatable {
    public struct Problem: Sendable, Equatable, CustomStringConvertible {
        public let position: LogPosition
        public let sequence: UInt64?
        public let reason: String
        public var description: String { "\(position)\(sequence.map { " seq \($0)" } ?? ""): \(reason)" }
    }
    public var records = 0
    public var skipped = 0
    public var problems: [Problem] = []
    public var isIntact: Bool { problems.isEmpty }
}

extension Log {
    /// Walks every segment (read-only): `body` sees each step; segments that
    /// cannot be opened (damaged header, cut short) go to `unreadable`.
    func walk(unreadable: (UInt32, LogError) -> Void = { _, _ in }, _ body: (SegmentFile, RecordWalker.Step) -> Void) {
        let numbers = segmentNumbers()
        for number in numbers {
            let segment: SegmentFile
            do { segment = try openSegment(number, writable: false) } catch {
                unreadable(number, error)
                continue
            }
            var offset = segment.dataOffset
            let claim = meta.loadClaimPosition()
            walkSegment: while true {
                let step = RecordWalker.step(segment, at: offset)
                body(segment, step)
                switch step {
                case .record(_, let length, _, _, let intact):
                    if intact {
                        offset += RecordFormat.span(payload: length)
                    } else {
                        // Its length is not to be trusted: find the next record.
                        let limit = claim.segment == number ? Int(claim.offset) : segment.size
                        guard let next = RecordWalker.resynchronize(segment, from: offset + RecordFormat.slotAlignment, after: nil, bound: limit) else { break walkSegment }
                        offset = next
                    }
                case .skip(_, let span): offset += span
                case .endOfSegment: break walkSegment
                case .open, .garbage:
                    // Past the claim: the end. Before it: look for the next record.
                    let limit = claim.segment == number ? Int(claim.offset) : segment.size
                    guard offset < limit, let next = RecordWalker.resynchronize(segment, from: offset + RecordFormat.slotAlignment, after: nil, bound: limit) else {
                        break walkSegment
                    }
                    offset = next
                }
            }
        }
    }

    /// Segment files and the bytes they occupy on disk (allocated size),
    /// without reading any record: cheap enough to sample for metrics.
    public func footprint() -> (segments: Int, bytes: Int) {
        let numbers = segmentNumbers()
        return (numbers.count, numbers.reduce(0) { $0 + FileSystem.allocatedBytes(of: segmentPath($1)) })
    }

    /// Counts, sizes and the first and last records (reads every record
    /// header), and warnings for damage that needs no checksum to see:
    /// unreadable, missing or cut segments and unexplained sequence gaps.
    public func stat() -> LogStats {
        let numbers = segmentNumbers()
        var stats = LogStats(segments: numbers.count, bytes: 0, records: 0, nextPosition: nextPosition.position,
                             segmentSize: meta.segmentSize)
        for number in numbers {
            stats.bytes += FileSystem.allocatedBytes(of: segmentPath(number))
        }
        var audit = StructureAudit(log: self, numbers: numbers)
        walk(unreadable: { audit.unreadable($0, $1) }) { segment, step in
            audit.see(segment, step)
            if case .record(_, _, let sequence, let timestamp, true) = step {
                stats.records += 1
                if stats.firstSequence == nil { stats.firstSequence = sequence; stats.firstTime = timestamp }
                stats.lastSequence = sequence
                stats.lastTime = timestamp
            }
        }
        stats.warnings = audit.finish().map(\.description) + audit.notes
        return stats
    }

    /// Checks every record's checksum and the order of sequence numbers,
    /// and the structure: every segment readable, none missing between the
    /// oldest and the newest, none cut short, index entries pointing at the records they name, and no sequence gap
    /// beyond the one sequence each skipped claim explains (read-only; safe
    /// while appenders and tailers run).
    public func verify() -> LogVerification {
        var result = LogVerification()
        var last: UInt64?
        let claim = meta.loadClaimPosition()
        let numbers = segmentNumbers()
        var audit = StructureAudit(log: self, numbers: numbers)
        walk(unreadable: { audit.unreadable($0, $1) }) { segment, step in
            audit.see(segment, step)
            let here = { (offset: Int) in LogPosition(segment: segment.number, offset: UInt32(offset)) }
            switch step {
            case .record(let offset, _, let sequence, _, let intact):
                if !intact {
                    result.problems.append(.init(position: here(offset), sequence: sequence, reason: "checksum mismatch"))
                } else {
                    if let last, sequence <= last {
                        result.problems.append(.init(position: here(offset), sequence: sequence, reason: "sequence \(sequence) after \(last)"))
                    }
                    last = sequence
                    result.records += 1
                }
            case .skip: result.skipped += 1
            case .garbage(let offset, let word):
                result.problems.append(.init(position: here(offset), sequence: nil, reason: "invalid record word 0x\(String(word, radix: 16))"))
            case .open(let offset, let word):
                if here(offset) < claim, RecordFormat.decode(word)?.kind == .empty {
                    // A hole below the claim word with data after it: a claim
                    // whose appender was killed before marking it. Nothing
                    // was committed there; it is stepped over, not damage.
                    if RecordWalker.resynchronize(segment, from: offset + RecordFormat.slotAlignment, after: nil,
                                         bound: claim.segment == segment.number ? Int(claim.offset) : segment.size) != nil {
                        result.skipped += 1
                    }
                }
            case .endOfSegment: break
            }
        }
        result.problems += audit.finish()
        return result
    }

    /// Retention: deletes whole segments, oldest first, while the log is
    /// larger than `maxBytes` (counting segments up to the one being
    /// appended to, not those made ahead by a `LogPretoucher`) or a
    /// segment's records are all older than `maxAge` (a segment's age is
    /// the timestamp of the next segment's first indexed record: every
    /// record of the segment came before it). Never deletes the segment
    /// being appended to. Returns the deleted numbers.
    ///
    /// Tailers that have a deleted segment mapped finish reading it; a
    /// tailer that reaches a deleted segment moves to the oldest retained
    /// record or throws `.positionDeleted`, per its `DeletedSegmentPolicy`.
    @discardableResult
    public func trim(maxBytes: Int? = nil, maxAge: Duration? = nil) throws(LogError) -> [UInt32] {
        let numbers = segmentNumbers()
        let active = nextPosition.position.segment
        var total = numbers.filter { $0 <= active }.count * meta.segmentSize
        let now = wallClockNanoseconds()
        var deleted: [UInt32] = []
        for (i, number) in numbers.enumerated() where number < active && i + 1 < numbers.count {
            let tooBig = maxBytes.map { total > $0 } ?? false
            var tooOld = false
            if let maxAge, let next = try? openSegment(numbers[i + 1], writable: false), let first = next.firstIndexedTimestamp {
                tooOld = now > first && now &- first > maxAge.nanoseconds
            }
            guard tooBig || tooOld else { break }
            do { try FileSystem.remove(segmentPath(number)) } catch { throw .system(operation: "unlink", path: segmentPath(number), error) }
            total -= meta.segmentSize
            deleted.append(number)
        }
        return deleted
    }
}
