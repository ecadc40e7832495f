import ShmSystem

/// The one reader of record slots in a segment, which every walk of the log
/// uses — tailing, recovery, lookup by sequence and time, verify, stat,
/// trim and sendfile — trusting nothing it reads (another process, a crash
/// or a disk wrote it). `step` reads one slot; `resynchronize` finds the next
/// plausible slot after damage.
enum RecordWalker {
    /// One step through a segment.
    enum Step {
        case record(offset: Int, length: Int, sequence: UInt64, timestamp: UInt64, intact: Bool)
        case skip(offset: Int, span: Int)
        case endOfSegment(offset: Int)
        /// Nothing (yet) at this offset: empty, or claimed and not committed.
        case open(offset: Int, word: UInt64)
        /// A word that cannot start a record.
        case garbage(offset: Int, word: UInt64)
    }

    /// Reads the slot at `offset` without trusting anything in it.
    static func step(_ segment: SegmentFile, at offset: Int) -> Step {
        guard offset + RecordFormat.wordSize <= segment.size else { return .endOfSegment(offset: offset) }
        let word = segment.word(at: offset)
        guard let (kind, length) = RecordFormat.decode(word) else { return .garbage(offset: offset, word: word) }
        switch kind {
        case .empty, .writing:
            return .open(offset: offset, word: word)
        case .end:
            return .endOfSegment(offset: offset)
        case .skip:
            guard length >= 8, length % 8 == 0, offset + length <= segment.size else { return .garbage(offset: offset, word: word) }
            return .skip(offset: offset, span: length)
        case .data:
            guard segment.fits(offset: offset, length: length) else { return .garbage(offset: offset, word: word) }
            let r = segment.record(at: offset, length: length)
            return .record(offset: offset, length: length, sequence: r.sequence, timestamp: r.timestamp, intact: r.intact)
        }
    }

    /// Zero bytes after which a resynchronizing scan gives up beyond the
    /// claim word's bound: records are contiguous, so past the last claimed
    /// byte a run of 64 KiB of zeros is the end of what was written.
    static let zeroRunLimit = 64 << 10

    /// The next offset at or after `from` where a record slot plausibly
    /// starts: an intact record (sequence above `after`), or a claim or skip
    /// word with a plausible span (a live appender's record in progress is
    /// not stepped over). Zeros are scanned to `bound`; past it, a 64 KiB
    /// run of zeros ends the search.
    static func resynchronize(_ segment: SegmentFile, from: Int, after: UInt64?, bound: Int?) -> Int? {
        var offset = (from + 7) & ~7
        let end = segment.size - 8
        let zeroBound = bound ?? 0
        var zeros = 0
        while offset <= end {
            let word = segment.word(at: offset)
            if word == 0 {
                zeros += 8
                if zeros >= zeroRunLimit && offset >= zeroBound { return nil }
                offset += 8
                continue
            }
            zeros = 0
            if let (kind, length) = RecordFormat.decode(word) {
                switch kind {
                case .data:
                    // Cheap checks before the CRC: a payload full of
                    // record-like words must not cost a CRC each.
                    let record = UnsafeRawPointer(segment.base + offset)
                    if segment.fits(offset: offset, length: length),
                       record.load(fromByteOffset: RecordFormat.Offset.appender, as: UInt32.self) != 0,
                       record.load(fromByteOffset: RecordFormat.Offset.timestamp, as: UInt64.self) != 0 {
                        let sequence = record.load(fromByteOffset: RecordFormat.Offset.sequence, as: UInt64.self)
                        if after.map({ sequence > $0 }) ?? (sequence > 0),
                           RecordFormat.checksum(record: record, length: length)
                            == record.load(fromByteOffset: RecordFormat.Offset.checksum, as: UInt32.self) {
                            return offset
                        }
                    }
                case .writing, .skip:
                    if length >= (kind == .writing ? RecordFormat.headerSize : 8), length % 8 == 0, offset + length <= segment.size,
                       kind == .skip || UnsafeRawPointer(segment.base + offset).load(fromByteOffset: RecordFormat.Offset.appender, as: UInt32.self) != 0 {
                        return offset
                    }
                case .empty, .end:
                    break
                }
            }
            offset += 8
        }
        return nil
    }
}
