import ShmSystem

/// What recovery found and did (`LogAppender.recovery`).
public struct RecoveryReport: Sendable, Equatable {
    /// Where appending continues, and with which sequence number.
    public var position: LogPosition
    public var nextSequence: UInt64
    /// Claims that killed appenders never committed, turned into skips.
    public var abandonedClaims = 0
    /// Committed records that fail their checksum but have valid records
    /// after them: kept (verify reports them; tailers skip them).
    public var corruptRecordsKept = 0
    /// Damaged records whose length could not be trusted: replaced by a
    /// skip up to the next valid record.
    public var corruptRecordsSkipped = 0
    /// Bytes cleared after the last valid record (a torn tail).
    public var truncatedBytes = 0
    /// Segments found cut short (someone truncated them): extended back with
    /// zeros and marked, so `verify` reports what was lost.
    public var cutSegments: [UInt32] = []

    /// Whether recovery found anything to repair (abandoned claims, damage,
    /// a torn tail, cut segments).
    public var repairedAnything: Bool {
        abandonedClaims > 0 || corruptRecordsKept > 0 || corruptRecordsSkipped > 0 || truncatedBytes > 0 || !cutSegments.isEmpty
    }
}

extension Log {
    /// Finds the end of the log and makes it appendable. Runs only while no
    /// other appender is alive (the caller holds `appenders.lock` exclusively).
    func recover() throws(LogError) -> RecoveryReport {
        var numbers = segmentNumbers()
        if numbers.isEmpty {
            _ = try SegmentFile.createOrOpen(directory: directory, number: 0, meta: meta, syncDirectory: true)
            numbers = [0]
        }
        var report = RecoveryReport(position: LogPosition(segment: numbers[0], offset: UInt32(dataOffset)), nextSequence: 1)
        // Scan from the last segment backwards until one holds a record.
        var scanned: [(segment: SegmentFile, end: Int, last: UInt64?, endMarker: Bool)] = []
        // Leftovers of processes killed while creating a segment.
        removeCreatingFiles()
        resetWaitCountsIfNoTailer()
        for number in numbers.reversed() {
            let segment: SegmentFile
            do {
                segment = try openSegment(number, writable: true, repairing: true)
                if segment.repairedCut { report.cutSegments.append(number) }
            } catch .invalidLayout(_, _) where number == numbers.last && number > numbers[0] {
                // The newest segment's header did not reach the disk: it holds nothing.
                FileSystem.removeIfPresent(segmentPath(number))
                continue
            }
            let result = scan(segment, report: &report, bound: claimBound(in: segment))
            scanned.append((segment, result.end, result.last, result.endMarker))
            if result.last != nil { break }
        }
        let lastSequence = scanned.lazy.compactMap(\.last).first
        // Segments after the last one with a record hold nothing: keep the
        // first of them (it may be the active one), drop the rest.
        let withRecord = scanned.firstIndex { $0.last != nil }
        var tail = scanned.last!
        if let i = withRecord { tail = scanned[i] }
        let empties = scanned.prefix(withRecord ?? scanned.count - 1) // later segments, newest first
        for empty in empties.dropLast() { FileSystem.removeIfPresent(empty.segment.path) }
        if !tail.endMarker {
            clear(tail.segment, from: tail.end, report: &report)
        }
        // An empty segment after the tail is the active one only if the claim
        // moved there (an appender rolled into it and died before writing) or
        // the tail was closed: a segment made ahead (`LogPretoucher`) while
        // the claim was still in the tail is kept for later, and appending
        // continues where the tail's records end.
        let claimedSegment = meta.loadClaimPosition().segment
        if let active = empties.last, tail.endMarker || claimedSegment >= active.segment.number {
            // The tail segment was rolled: close it, continue in the next.
            if !tail.endMarker, tail.end + RecordFormat.wordSize <= tail.segment.size {
                // SYNC POINT: release pairs with the tailers' acquire load of the word.
                tail.segment.wordPointer(tail.end).pointee.store(RecordFormat.word(.end, length: 0), ordering: .releasing)
            }
            clear(active.segment, from: active.segment.dataOffset, report: &report)
            report.position = LogPosition(segment: active.segment.number, offset: UInt32(dataOffset))
        } else if tail.endMarker {
            guard tail.segment.number < UInt32.max - 1 else { throw .invalidLayout(path: tail.segment.path, reason: "last segment number") }
            report.position = LogPosition(segment: tail.segment.number + 1, offset: UInt32(dataOffset))
            // Create it now, so tailers waiting for it can park instead of polling.
            _ = try SegmentFile.createOrOpen(directory: directory, number: report.position.segment, meta: meta, syncDirectory: true)
        } else {
            report.position = LogPosition(segment: tail.segment.number, offset: UInt32(tail.end))
        }
        // No record anywhere (a new log, or retention took them all): keep
        // counting from the claim word.
        report.nextSequence = lastSequence.map { $0 &+ 1 } ?? max(1, meta.loadClaim().sequence)
        guard report.nextSequence != 0 else { throw .invalidLayout(path: directory, reason: "sequence numbers exhausted") }
        try? tail.segment.sync(tail.segment.dataOffset..<min(tail.segment.size, tail.end + RecordWalker.zeroRunLimit + 4096))
        meta.storeClaim(report.position, sequence: report.nextSequence)
        do { try meta.file.sync() } catch { throw .mapping(error) }
        return report
    }

    /// Walks a segment: committed records, skips, claims of dead appenders
    /// (turned into skips), holes (closed if an intact record follows).
    private func scan(_ segment: SegmentFile, report: inout RecoveryReport, bound: Int?) -> (end: Int, last: UInt64?, endMarker: Bool) {
        var offset = segment.dataOffset
        var last: UInt64?
        while true {
            switch RecordWalker.step(segment, at: offset) {
            case .record(_, let length, let sequence, _, let intact):
                let span = RecordFormat.span(payload: length)
                if intact {
                    last = sequence
                    offset += span
                } else if let next = RecordWalker.resynchronize(segment, from: offset + RecordFormat.slotAlignment, after: last, bound: bound) {
                    if next == offset + span {
                        report.corruptRecordsKept += 1 // its length holds: keep it for verify to report
                    } else {
                        closeHole(segment, from: offset, to: next, report: &report)
                        report.corruptRecordsSkipped += 1
                    }
                    offset = next
                } else {
                    return (offset, last, false) // a torn last record
                }
            case .skip(_, let span):
                offset += span
            case .endOfSegment(let at):
                return (at, last, at + RecordFormat.wordSize <= segment.size)
            case .open(_, let word):
                let (kind, span) = RecordFormat.decode(word) ?? (.empty, 0)
                if kind == .writing, span >= RecordFormat.headerSize, span % 8 == 0, offset + span <= segment.size {
                    // No appender is alive: this claim will never be committed.
                    // SYNC POINT: release pairs with the tailers' acquire load of the word.
                    segment.wordPointer(offset).pointee.store(RecordFormat.word(.skip, length: span), ordering: .releasing)
                    report.abandonedClaims += 1
                    offset += span
                } else if let next = RecordWalker.resynchronize(segment, from: offset + RecordFormat.slotAlignment, after: last, bound: bound) {
                    closeHole(segment, from: offset, to: next, report: &report)
                    offset = next
                } else {
                    return (offset, last, false)
                }
            case .garbage:
                if let next = RecordWalker.resynchronize(segment, from: offset + RecordFormat.slotAlignment, after: last, bound: bound) {
                    closeHole(segment, from: offset, to: next, report: &report)
                    offset = next
                } else {
                    return (offset, last, false)
                }
            }
        }
    }

    private func closeHole(_ segment: SegmentFile, from: Int, to: Int, report: inout RecoveryReport) {
        // SYNC POINT: release pairs with the tailers' acquire load of the word.
        segment.wordPointer(from).pointee.store(RecordFormat.word(.skip, length: to - from), ordering: .releasing)
        report.abandonedClaims += 1
    }

    /// Zeroes everything from `offset` to the end of the segment that is not
    /// zero already, and the index entries pointing there.
    private func clear(_ segment: SegmentFile, from offset: Int, report: inout RecoveryReport) {
        guard offset < segment.size else { return }
        var at = offset
        var zeros = 0
        // Stop after 64 KiB of zeros: nothing was written beyond (see `zeroRunLimit`).
        while at < segment.size && zeros < RecordWalker.zeroRunLimit {
            let end = min(segment.size, (at + 4096) & ~4095)
            let chunk = UnsafeMutableRawBufferPointer(start: segment.base + at, count: end - at)
            if chunk.contains(where: { $0 != 0 }) {
                report.truncatedBytes += chunk.count
                chunk.initializeMemory(as: UInt8.self, repeating: 0)
                zeros = 0
            } else {
                zeros += chunk.count
            }
            at = end
        }
        segment.clearIndex(from: offset)
    }

    /// Removes `.creating.*` files: segments and metadata whose creators
    /// died before renaming them into place. No appender is alive now, but
    /// a process creating the log (`Log.create` makes segment 0 outside the
    /// appenders' lock) may be: a file whose creator's lease is held stays.
    private func removeCreatingFiles() {
        for name in FileSystem.entries(in: directory) where name.hasPrefix(creatingPrefix) {
            if let creator = StagedFile.creator(ofTemporaryName: name, prefix: creatingPrefix), creator.isAlive { continue }
            FileSystem.removeIfPresent(directory + "/" + name)
        }
    }

    /// Killed tailers leave the parking-tailers and sleepers counts too high
    /// (every append would then pay a seq_cst store and a futex wake). When
    /// no sleeping-capable tailer holds `tailers.lock`, both are reset.
    private func resetWaitCountsIfNoTailer() {
        guard let lock = try? FileLock(path: directory + "/tailers.lock"), (try? lock.tryLock(.exclusive)) == true else { return }
        meta.parkingTailers.pointee.store(0, ordering: .relaxed)
        meta.parker.resetSleepers()
        lock.unlock()
    }
}
