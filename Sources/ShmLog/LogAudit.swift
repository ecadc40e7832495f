import ShmSystem

/// What `verify` and `stat` check besides checksums, fed step by step by
/// `Log.walk`:
///
/// - every segment between the oldest and the newest exists and opens
///   (a damaged header or a file cut short is named with its reason);
/// - (a note, not a problem) a segment recovery found cut short
///   (`SegmentFile.cutTo`);
/// - sequence numbers are contiguous, except one number for each skipped
///   claim or hole (an appender killed between claim and commit), and an
///   untrimmed log (segment 0 present) starts at sequence 1;
/// - each sparse-index entry points at a record the walk saw, with the
///   sequence the entry names.
struct StructureAudit {
    let log: Log
    private(set) var problems: [LogVerification.Problem] = []
    /// What is worth knowing but is no damage (for `stat`).
    private(set) var notes: [String] = []
    private var lastSequence: UInt64?
    /// Skipped claims and holes since `lastSequence`: one sequence each.
    private var explained: UInt64 = 0
    private var sawRecord = false
    private let startsAtZero: Bool
    private let claim: LogPosition
    // The segment being walked: its records by offset, for the index check.
    private var current: SegmentFile?
    private var records: [Int: UInt64] = [:]
    private var walkedTo = 0

    init(log: Log, numbers: [UInt32]) {
        self.log = log
        startsAtZero = numbers.first == 0
        claim = log.meta.loadClaimPosition()
        for (a, b) in zip(numbers, numbers.dropFirst()) where b > a + 1 {
            let range = b == a + 2 ? "segment \(a + 1) is" : "segments \(a + 1)…\(b - 1) are"
            problems.append(.init(position: LogPosition(segment: a + 1, offset: 0), sequence: nil,
                                  reason: "\(range) missing between \(a) and \(b): their records are lost"))
        }
    }

    /// A segment that could not be opened.
    mutating func unreadable(_ number: UInt32, _ error: LogError) {
        finishSegment()
        problems.append(.init(position: LogPosition(segment: number, offset: 0), sequence: nil, reason: "\(error)"))
        // Its records are unknown: the gap after it is this problem, not another.
        lastSequence = nil
        sawRecord = true
    }

    mutating func see(_ segment: SegmentFile, _ step: RecordWalker.Step) {
        if current !== segment {
            finishSegment()
            current = segment
            if let cut = segment.cutTo {
                // Recovery went on from the cut, reusing the lost sequence
                // numbers (a torn tail) or leaving a gap, which is then a
                // problem of its own: a note, not damage.
                notes.append("segment \(segment.number) was found cut to \(cut) bytes (of \(segment.size)) and extended with zeros; "
                             + "recovery continued from there")
            }
        }
        switch step {
        case .record(let offset, let length, let sequence, _, let intact):
            walkedTo = max(walkedTo, offset + RecordFormat.span(payload: length))
            guard intact else {
                // Reported as a checksum mismatch; it stands for its own sequence.
                explained += 1
                return
            }
            records[offset] = sequence
            let here = LogPosition(segment: segment.number, offset: UInt32(offset))
            if let last = lastSequence {
                if sequence > last &+ 1, sequence - last - 1 > explained {
                    problems.append(.init(position: here, sequence: sequence,
                                          reason: "sequences \(last + 1)…\(sequence - 1) are missing "
                                              + "(\(explained) skipped claim(s) explain \(explained) of \(sequence - last - 1))"))
                }
            } else if !sawRecord, startsAtZero, segment.number == 0, sequence > 1 &+ explained {
                problems.append(.init(position: here, sequence: sequence,
                                      reason: "the log starts at sequence \(sequence), not 1: sequences 1…\(sequence - 1) are missing"))
            }
            lastSequence = sequence
            sawRecord = true
            explained = 0
        case .skip(let offset, let span):
            walkedTo = max(walkedTo, offset + span)
            explained += 1
        case .open(let offset, let word):
            // Below the claim word: a claim killed before it was marked
            // (empty) or before it was committed (writing), or one still
            // being written. Each holds one sequence number.
            let kind = RecordFormat.decode(word)?.kind
            if LogPosition(segment: segment.number, offset: UInt32(offset)) < claim, kind == .empty || kind == .writing {
                explained += 1
            }
        case .garbage, .endOfSegment:
            break
        }
    }

    /// The checks that need the whole walk; returns every problem found.
    mutating func finish() -> [LogVerification.Problem] {
        finishSegment()
        return problems
    }

    /// Index entries of the segment just walked, against its records.
    private mutating func finishSegment() {
        defer { current = nil; records = [:]; walkedTo = 0 }
        guard let segment = current else { return }
        for k in 0..<segment.indexEntries {
            let raw = segment.rawIndexOffset(k)
            guard raw != 0 else { continue }
            // Entries past what we walked may belong to records appended meanwhile.
            guard raw < UInt64(walkedTo) else { continue }
            let entry = segment.indexEntry(k)
            if let entry, records[entry.offset] == entry.sequence { continue }
            let what = entry.map { "offset \($0.offset), sequence \($0.sequence)" } ?? "offset \(raw)"
            problems.append(.init(position: LogPosition(segment: segment.number, offset: 0), sequence: entry?.sequence,
                                  reason: "index entry \(k) names \(what), where no such record is"))
        }
    }
}
