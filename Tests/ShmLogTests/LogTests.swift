#if canImport(Glibc)
import Glibc
#endif
import Testing
import ShmTestSupport
@testable import ShmLog
import ShmSystem
import MetricsTestKit

@Suite("Log in one process")
struct LogTests {
    @Test func crc32cMatchesTheStandardCheckValue() {
        let bytes = Array("123456789".utf8)
        #expect(bytes.withUnsafeBytes { RecordFormat.crc32c($0) } == 0xE306_9283)
        let long = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let hardware = long.withUnsafeBytes { RecordFormat.crc32c($0) }
        #expect(hardware == long.withUnsafeBytes { cshmSoftwareCRC($0) })
        // A record's checksum in one call (length prefix, then bytes) is the
        // value the two chained calls gave: logs written before still verify.
        // Every length through two 64-byte runs (each straight-line word count
        // and 4/2/1-byte tail), a long one, and starts off 8-byte alignment.
        for count in Array(0...136) + [999] {
            for start in [0, 1, 3, 7] {
                for prefix: UInt32 in [0, 40, 0xDEAD_BEEF] {
                    var le = prefix.littleEndian
                    let chained = long.withUnsafeBytes { body in
                        CRC32C.update(withUnsafeBytes(of: &le) { CRC32C.update(0, $0.baseAddress, count: 4) }, body.baseAddress! + start, count: count)
                    }
                    let software = long.withUnsafeBytes { body in
                        CRC32C.softwareUpdate(withUnsafeBytes(of: &le) { CRC32C.softwareUpdate(0, $0.baseAddress, count: 4) },
                                              body.baseAddress! + start, count: count)
                    }
                    let fused = long.withUnsafeBytes { CRC32C.prefixed(prefix, $0.baseAddress! + start, count: count) }
                    #expect(fused == chained && fused == software, "prefix \(prefix), \(count) bytes from \(start)")
                }
            }
        }
    }

    @Test func appendThenTailReturnsEveryRecordInOrder() throws {
        let scratch = ScratchLog("basic")
        let log = try scratch.create()
        let appender = try log.appender()
        var appended: [AppendedRecord] = []
        for i in 0..<1500 { appended.append(try appender.append(payload(i))) }
        // Claim, write in place, commit.
        let claim = try appender.claim(count: 8)
        claim.unsafeBytes.storeBytes(of: UInt64(0xFEED), as: UInt64.self)
        appended.append(try claim.commit())
        #expect(appended.map(\.sequence) == Array(1...1501))
        #expect(appended.map(\.position) == appended.map(\.position).sorted())

        let records = try readAll(log)
        #expect(records.count == 1501)
        for (i, record) in records.prefix(1500).enumerated() {
            #expect(record.text == payload(i))
            #expect(record.sequence == UInt64(i + 1) && record.position == appended[i].position)
        }
        #expect(records.last?.bytes == withUnsafeBytes(of: UInt64(0xFEED)) { Array($0) })
        #expect(Set(records.map(\.position.segment)).count > 1, "64 KiB segments rolled")
        // A tailer at the end sees only what comes next.
        let tailer = try log.tailer(from: .end)
        #expect(try tailer.tryNext() == nil)
        try appender.append("late")
        #expect(try tailer.next(timeout: .seconds(1)).text == "late")
        #expect(try tailer.tryNext() == nil)
    }

    @Test func anAbandonedClaimIsSteppedOver() throws {
        let scratch = ScratchLog("abandon")
        let log = try scratch.create()
        let appender = try log.appender()
        try appender.append("one")
        do { _ = try appender.claim(count: 100) } // dropped uncommitted
        try appender.append("three")
        #expect(try readAll(log).map(\.text) == ["one", "three"])
        #expect(log.verify().isIntact && log.verify().skipped == 1)
    }

    @Test func lookupsBySequenceAndTimeUseTheIndex() throws {
        let scratch = ScratchLog("lookup")
        let log = try scratch.create()
        let appender = try log.appender()
        var appended: [AppendedRecord] = []
        for i in 0..<3000 { appended.append(try appender.append(payload(i))) }
        #expect(log.segmentNumbers().count >= 4)
        for s in [1, 2, 777, 1500, 2999, 3000] as [UInt64] {
            #expect(try log.position(ofSequence: s) == appended[Int(s) - 1].position)
            #expect(try log.tailer(from: .sequence(s)).next(timeout: .zero).sequence == s)
        }
        let middle = appended[1234]
        let first = try log.tailer(from: .time(middle.timestamp)).next(timeout: .zero)
        #expect(first.timestamp >= middle.timestamp && first.sequence <= middle.sequence)
        #expect(throws: LogError.self) { _ = try log.position(ofSequence: 3001) }
        let stats = log.stat()
        #expect(stats.records == 3000 && stats.firstSequence == 1 && stats.lastSequence == 3000)
        #expect(stats.segments == log.segmentNumbers().count && stats.bytes > 0)
    }

    @Test func badInputFailsClearly() throws {
        let scratch = ScratchLog("bad")
        #expect(throws: LogError.notFound(directory: scratch.directory)) { _ = try Log.open(directory: scratch.directory) }
        #expect(throws: LogError.self) { _ = try Log.create(directory: scratch.directory, config: LogConfig(segmentSize: 1000)) }
        let log = try scratch.create()
        #expect(throws: LogError.alreadyExists(directory: scratch.directory)) { _ = try scratch.create() }
        let appender = try log.appender()
        #expect(throws: LogError.self) { _ = try appender.append([UInt8](repeating: 0, count: 70_000)) }
        #expect(throws: LogError.self) { _ = try log.appender(durability: .everyRecords(0)) }
        // A foreign file in place of log.meta.
        let other = ScratchLog("foreign")
        _ = mkdir(other.directory, 0o755)
        let fd = open(other.directory + "/log.meta", O_CREAT | O_WRONLY, 0o644)
        _ = ftruncate(fd, 4096)
        close(fd)
        #expect(throws: LogError.self) { _ = try Log.open(directory: other.directory) }
        do { _ = try Log.open(directory: other.directory) } catch { #expect("\(error)".contains("not a swift-shm log")) }
    }

    /// The persistent files follow the contract's header scheme: a damaged
    /// header field is refused by name (it was read as valid before the
    /// checksum), and files of the previous version still open.
    @Test func logFileHeadersAreChecksummedAndVersionOneStillOpens() throws {
        let scratch = ScratchLog("headers")
        do {
            let log = try scratch.create()
            try log.appender().append([1, 2, 3])
        }
        let meta = scratch.directory + "/log.meta", segment = scratch.directory + "/0000000000.seg"
        // createdAt (meta +32) and createdAt (segment +48): nothing else checks them.
        corruptByte(of: meta, at: 33)
        do { _ = try Log.open(directory: scratch.directory); Issue.record("a damaged log.meta opened") }
        catch { #expect("\(error)".contains("checksum"), "\(error)") }
        corruptByte(of: meta, at: 33)  // undo (the damage XORs)
        corruptByte(of: segment, at: 49)
        do {
            let log = try Log.open(directory: scratch.directory)
            _ = try log.tailer(from: .start).tryNext()
            Issue.record("a damaged segment header was read")
        } catch { #expect("\(error)".contains("checksum"), "\(error)") }
        corruptByte(of: segment, at: 49)
        #expect(try readAll(try Log.open(directory: scratch.directory)).map(\.bytes) == [[1, 2, 3]])
        // Version 1 (no checksum): rewrite both headers as the old build did.
        for (path, checksumAt) in [(meta, 40), (segment, 72)] {
            let fd = open(path, O_RDWR)
            var one: UInt32 = 1, zero: UInt64 = 0
            _ = pwrite(fd, &one, 4, 8)
            _ = pwrite(fd, &zero, 8, off_t(checksumAt))
            close(fd)
        }
        let old = try Log.open(directory: scratch.directory)
        try old.appender().append([4])
        #expect(try readAll(old).map(\.bytes) == [[1, 2, 3], [4]])
        #expect(old.verify().isIntact, "\(old.verify())")
    }

    @Test(arguments: [Durability.everyAppend, .everyRecords(10), .interval(.milliseconds(1))])
    func durabilityPoliciesKeepEveryRecord(policy: Durability) throws {
        let scratch = ScratchLog("durable")
        let log = try scratch.create()
        do {
            let appender = try log.appender(durability: policy)
            for i in 0..<200 { try appender.append(payload(i)) }
            try appender.flush()
        }
        #expect(try readAll(log).map(\.text) == (0..<200).map(payload))
    }

    @Test func aCorruptRecordIsReportedAndNeverReturned() throws {
        CapturedDiagnostics.install()
        let scratch = ScratchLog("corrupt")
        let log = try scratch.create()
        let appended = try appendPayloads(log, count: 100)
        let victim = appended[49].position
        corruptByte(of: log.segmentPath(victim.segment), at: Int(victim.offset) + RecordFormat.headerSize + 3)
        let report = log.verify()
        #expect(report.problems.count == 1 && report.problems.first?.sequence == 50, "\(report.problems)")
        #expect(report.records == 99)
        // The tailer throws for record 50 and then goes on with 51.
        let (seen, corrupt) = drain(try log.tailer())
        #expect(corrupt == [50])
        #expect(seen == Array(1...49) + Array(51...100))
        // The operator hears of it: one warning and one count, naming the log.
        let warnings = CapturedDiagnostics.lines(where: "log", is: log.directory)
        #expect(warnings.count == 1 && warnings.first?.level == .warning, "\(warnings)")
        #expect(warnings.first?.message.contains("corrupt") == true)
        #expect(CapturedDiagnostics.metrics.counterTotal(label: "shm_log_corrupt_records_total", dimensions: [("log", log.directory)]) == 1)
        // Recovery (a new appender once all are gone) keeps what follows it.
        let next = try log.appender()
        #expect(next.recovery?.corruptRecordsKept == 1)
        #expect(try next.append("after").sequence == 101)
        let recovered = CapturedDiagnostics.lines(where: "log", is: log.directory).filter { $0.level == .notice }
        #expect(recovered.count == 1 && recovered.first?.metadata["corruptRecordsKept"] == "1", "\(recovered)")
        #expect(CapturedDiagnostics.metrics.counterTotal(label: "shm_log_recoveries_total", dimensions: [("log", log.directory)]) == 1)
    }

    @Test func aRecordWithADamagedLengthCostsOnlyItself() throws {
        let scratch = ScratchLog("badlength")
        let log = try scratch.create()
        let appended = try appendPayloads(log, count: 100)
        // Record 50's length now claims 30,000 bytes: its checksum fails and its span lies.
        let victim = appended[49].position
        let fd = open(log.segmentPath(victim.segment), O_RDWR)
        var word = RecordFormat.word(.data, length: 30_000)
        _ = pwrite(fd, &word, 8, off_t(victim.offset))
        close(fd)
        let report = log.verify()
        #expect(report.problems.map(\.position) == [victim] && report.records == 99, "\(report.problems)")
        let (seen, corrupt) = drain(try log.tailer())
        #expect(seen == Array(1...49) + Array(51...100) && corrupt == [50])
        let appender = try log.appender()
        #expect(appender.recovery?.corruptRecordsSkipped == 1)
        #expect(try readAll(log).map(\.sequence) == Array(1...49) + Array(51...100))
        #expect(try appender.append("after").sequence == 101)
    }

    @Test func aTornTailIsTruncatedOnRecovery() throws {
        let scratch = ScratchLog("torn")
        let log = try scratch.create()
        let appended = try appendPayloads(log, count: 400)
        // Power-loss-like: the last segment's file loses its tail in the middle of a record.
        let last = appended.last!.position.segment
        let cutRecord = (appended.last { $0.position.segment == last && $0.position.offset > 8192 } ?? appended.last)!
        let cut = Int(cutRecord.position.offset) + 20
        #expect(truncate(log.segmentPath(last), off_t(cut)) == 0)
        let appender = try log.appender()
        let recovery = try #require(appender.recovery)
        #expect(recovery.nextSequence == cutRecord.sequence)
        #expect(recovery.truncatedBytes > 0)
        let survivors = try readAll(log)
        #expect(survivors.map(\.sequence) == Array(1..<cutRecord.sequence))
        #expect(survivors.allSatisfy { $0.text == payload(Int($0.sequence) - 1) })
        #expect(try appender.append("next").sequence == cutRecord.sequence)
        #expect(log.verify().isIntact)
    }

    @Test func retentionDeletesWholeSegmentsAndTailersMoveOrFail() throws {
        let scratch = ScratchLog("retain")
        let log = try scratch.create()
        let appender = try log.appender()
        for i in 0..<4000 { try appender.append(payload(i)) }
        let before = log.segmentNumbers()
        #expect(before.count >= 6)
        let failing = try log.tailer(from: .start, onDeletedSegment: .fail)
        let moving = try log.tailer(from: .start, onDeletedSegment: .moveToOldest)
        let deleted = try log.trim(maxBytes: 3 * (64 << 10))
        #expect(deleted == Array(before.prefix(before.count - 3)))
        #expect(log.segmentNumbers() == Array(before.suffix(3)))
        #expect(throws: LogError.self) { _ = try failing.tryNext() }
        do { _ = try failing.tryNext() } catch { if case .positionDeleted = error {} else { Issue.record("\(error)") } }
        let first = try #require(try moving.tryNext())
        #expect(first.position.segment == before[before.count - 3])
        #expect(log.stat().firstSequence == first.sequence)
        // By age: everything but the active segment is older than zero seconds.
        try log.trim(maxAge: .zero)
        #expect(log.segmentNumbers() == [before.last!])
        try appender.append("still appending")
        #expect(try readAll(log).last?.text == "still appending")
    }

    @Test func sendfileStreamsRecordsOverASocket() throws {
        let scratch = ScratchLog("sendfile")
        let log = try scratch.create()
        let appender = try log.appender()
        for i in 0..<1500 { try appender.append(payload(i)) }
        let (a, b) = try UnixSocket.pair()
        let sent = try log.send(from: 10, maxRecords: 1000, to: a.fileDescriptor)
        #expect(sent.records == 1000 && sent.nextSequence == 1010)
        var decoder = LogWireDecoder()
        var received: [LogRecord] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        var total = 0
        while total < sent.bytes {
            let n = read(b.fileDescriptor, &buffer, buffer.count)
            #expect(n > 0)
            if n <= 0 { break }
            total += n
            received += try decoder.feed(buffer[0..<n])
        }
        #expect(received.map(\.sequence) == Array(10..<1010))
        #expect(received.allSatisfy { $0.text == payload(Int($0.sequence) - 1) })
    }

    @Test func asyncRecordsArriveAsTheyAreAppended() async throws {
        let scratch = ScratchLog("async")
        let log = try scratch.create()
        let tailer = try log.tailer(from: .start)
        let appender = try log.appender()
        let reader = Task {
            var texts: [String] = []
            for try await record in tailer.records {
                texts.append(record.text)
                if texts.count == 3 { break }
            }
            return texts
        }
        for text in ["a", "b", "c"] { try appender.append(text) }
        #expect(try await TestSupport.bounded(reader) == ["a", "b", "c"])
    }
}

func cshmSoftwareCRC(_ bytes: UnsafeRawBufferPointer) -> UInt32 { CRC32C.softwareUpdate(0, bytes.baseAddress, count: bytes.count) }
