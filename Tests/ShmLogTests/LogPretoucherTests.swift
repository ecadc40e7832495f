#if canImport(Glibc)
import Glibc
#endif
import Testing
import Synchronization
import ShmSystem
import ShmTestSupport
@testable import ShmLog

/// Waits (polling every millisecond, at most `seconds`) until `condition` holds.
func eventually(_ seconds: Double = 10, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = monotonicNanoseconds() + UInt64(seconds * 1e9)
    while monotonicNanoseconds() < deadline {
        if try condition() { return true }
        usleep(1000)
    }
    return try condition()
}

@Suite("Log pretoucher")
struct LogPretoucherTests {
    /// It keeps `lead` bytes ready past the claim, makes the next segment
    /// while the claim is still in the current one, and the records
    /// appended through several segments beside it all read back intact.
    @Test func keepsTheLeadReadyAndMakesTheNextSegmentBeforeTheRoll() throws {
        let scratch = ScratchLog("pretouch-lead")
        let log = try scratch.create(segmentSize: 256 << 10)
        let pretoucher = try log.pretoucher(lead: 64 << 10, interval: .microseconds(50))
        defer { pretoucher.stop() }
        #expect(eventually { pretoucher.touchedBytes >= 64 << 10 }, "touched \(pretoucher.touchedBytes)")
        // Nothing appended, nothing near the end: no next segment yet.
        #expect(pretoucher.segmentsMade == 0)
        #expect(!FileSystem.exists(log.segmentPath(1)))

        let appender = try log.appender()
        var appended: [AppendedRecord] = []
        // Past half of segment 0 but not within the lead of its end: the half-way rule makes the next one.
        while log.nextPosition.position.offset < UInt32(140 << 10) {
            appended.append(try appender.append(payload(appended.count)))
        }
        #expect(log.nextPosition.position.segment == 0)
        #expect(Int(log.nextPosition.position.offset) + (64 << 10) < 256 << 10, "within the lead: the test proves less")
        #expect(eventually { FileSystem.exists(log.segmentPath(1)) && pretoucher.segmentsMade == 1 },
                "the next segment was not made ahead of the roll")
        #expect(log.nextPosition.position.segment == 0, "the appender rolled: the test proves nothing")

        // Through three more segments beside it.
        while log.nextPosition.position.segment < 4 {
            appended.append(try appender.append(payload(appended.count)))
        }
        // (How many it made ahead depends on how often it looked: at least the first.)
        #expect(pretoucher.segmentsMade >= 1)
        let records = try readAll(log)
        #expect(records.map(\.sequence) == appended.map(\.sequence))
        #expect(records.enumerated().allSatisfy { $1.text == payload($0) })
        #expect(log.verify().isIntact)
        #expect(pretoucher.failures == 0)
    }

    /// Populating pages changes no byte: past the last record, the segment
    /// the pretoucher has gone over is all zeros, and so is the segment it
    /// made ahead (beyond its header and index).
    @Test func writesNoByteOfTheLog() throws {
        let scratch = ScratchLog("pretouch-zero")
        let log = try scratch.create(segmentSize: 256 << 10)
        let pretoucher = try log.pretoucher(lead: 128 << 10, interval: .microseconds(50))
        let appender = try log.appender()
        for i in 0..<2000 { try appender.append(payload(i)) }
        let end = Int(log.nextPosition.position.offset)
        #expect(log.nextPosition.position.segment == 0 && end > (256 << 10) - (128 << 10), "at \(log.nextPosition.position)")
        // Wait until it has gone over all of segment 0 past the claim (and made segment 1).
        #expect(eventually { pretoucher.segmentsMade == 1 && pretoucher.touchedBytes >= (256 << 10) - (end & ~4095) })
        pretoucher.stop()
        let current = try log.openSegment(0, writable: false)
        let tail = UnsafeRawBufferPointer(start: current.base + end, count: current.size - end)
        #expect(tail.allSatisfy { $0 == 0 }, "bytes past the claim changed")
        let next = try log.openSegment(1, writable: false)
        let data = UnsafeRawBufferPointer(start: next.base + next.dataOffset, count: next.size - next.dataOffset)
        #expect(data.allSatisfy { $0 == 0 }, "the segment made ahead holds data")
        #expect(log.verify().isIntact)
    }

    /// Appenders in other processes SIGKILLed again and again while a
    /// pretoucher keeps making next segments: every acknowledged record is
    /// there after recovery (which may continue in the segment made ahead),
    /// in order, and the log verifies.
    @Test func appendersKilledBesideAPretoucherLoseNothingAcknowledged() throws {
        let scratch = ScratchLog("pretouch-kill")
        let log = try scratch.create(segmentSize: 64 << 10)
        let pretoucher = try log.pretoucher(lead: 64 << 10, interval: .microseconds(20))
        defer { pretoucher.stop() }
        var acknowledged: [String: Int] = [:]
        for round in 0..<4 {
            try killAppenderPeersAndRecover(log, directory: scratch.directory, tags: ["p\(round)a", "p\(round)b"], durability: "none",
                                            round: round, pause: 5_000...40_000, acknowledged: &acknowledged)
        }
        #expect(pretoucher.segmentsMade > 0, "the pretoucher never made a segment ahead: the test proves nothing")
        #expect(log.verify().isIntact)
    }

    /// A segment cut short under it (another process's `ftruncate`) is a
    /// counted failure, not a SIGBUS — whether the cut comes after it mapped
    /// the segment (its `madvise` fails past the end) or before (the open
    /// fails) — and it goes on.
    @Test func aSegmentCutShortUnderItIsAFailureNotACrash() throws {
        let scratch = ScratchLog("pretouch-cut")
        let log = try scratch.create(segmentSize: 1 << 20, granularity: 4096)
        let appender = try log.appender()
        try appender.append("first")
        let pretoucher = try log.pretoucher(lead: 64 << 10, interval: .microseconds(50))
        defer { pretoucher.stop() }
        #expect(eventually { pretoucher.touchedBytes >= 64 << 10 })
        #expect(pretoucher.failures == 0)
        // Cut it behind the pretoucher's mapping, then move the claim far on
        // without writing there (a large claim, given up: only its header is written).
        #expect(truncate(log.segmentPath(0), 32 << 10) == 0)
        try appender.claim(count: 400 << 10).abort()
        #expect(log.nextPosition.position.offset > 400 << 10)
        #expect(eventually { pretoucher.failures > 0 }, "no failure counted (touched \(pretoucher.touchedBytes))")
        pretoucher.stop()

        // A pretoucher started on the cut segment cannot open it: one failure, counted once.
        let late = try log.pretoucher(lead: 64 << 10, interval: .microseconds(20))
        #expect(eventually { late.failures > 0 })
        usleep(20_000)
        late.stop()
        #expect(late.failures == 1, "\(late.failures) failures for one segment")
        #expect(late.touchedBytes == 0)
    }

    /// `stop` returns soon, even while the thread sleeps a long interval,
    /// and can be called again; a released pretoucher stops itself.
    @Test func stopIsPromptAndRepeatable() throws {
        let scratch = ScratchLog("pretouch-stop")
        let log = try scratch.create(segmentSize: 256 << 10)
        let pretoucher = try log.pretoucher(lead: 64 << 10, interval: .seconds(1))
        #expect(eventually { pretoucher.touchedBytes >= 64 << 10 })
        let start = monotonicNanoseconds()
        pretoucher.stop()
        pretoucher.stop()
        #expect(monotonicNanoseconds() - start < 500_000_000, "stop took \((monotonicNanoseconds() - start) / 1_000_000) ms")
        let touched = pretoucher.touchedBytes
        // Stopped: the claim moving on makes it touch nothing more.
        let appender = try log.appender()
        for i in 0..<3000 { try appender.append(payload(i)) }
        usleep(20_000)
        #expect(pretoucher.touchedBytes == touched)
        // Released at once: its deinit stops the thread and waits for it.
        var control: LogPretoucher.Control?
        do { control = try log.pretoucher(lead: 64 << 10).control }
        #expect(control?.exitedWord.pointee.load(ordering: .relaxed) == 1, "the thread outlived its pretoucher")
    }

    /// An appender closed cleanly with the claim in segment 0 and segment 1
    /// made ahead: the next appender's recovery continues in segment 0 (it
    /// used to jump to the empty segment 1, wasting the rest of 0), keeps
    /// segment 1, and the log verifies; rolling later uses segment 1.
    @Test func aRestartContinuesInTheSegmentTheClaimIsIn() throws {
        let scratch = ScratchLog("pretouch-restart")
        let log = try scratch.create(segmentSize: 256 << 10)
        do {
            let pretoucher = try log.pretoucher(lead: 64 << 10, interval: .microseconds(50))
            let appender = try log.appender()
            var i = 0
            while log.nextPosition.position.offset < UInt32(140 << 10) { try appender.append(payload(i)); i += 1 }
            #expect(eventually { FileSystem.exists(log.segmentPath(1)) })
            pretoucher.stop()
        }
        let before = log.nextPosition.position
        #expect(before.segment == 0)
        let appender = try log.appender()
        #expect(appender.recovery != nil, "no recovery ran: the test proves nothing")
        #expect(log.nextPosition.position == before, "recovery moved the claim from \(before) to \(log.nextPosition.position)")
        #expect(FileSystem.exists(log.segmentPath(1)))
        let record = try appender.append("after the restart")
        #expect(record.position.segment == 0)
        while log.nextPosition.position.segment == 0 { try appender.append("filling") }
        #expect(log.nextPosition.position.segment == 1)
        #expect(log.verify().isIntact, "\(log.verify().problems)")
        #expect(try readAll(log).contains { $0.text == "after the restart" })
    }

    /// Retention beside a pretoucher: a segment made ahead is not counted
    /// against `maxBytes`, and `maxAge` dates a segment by the next one's
    /// first record — the file made ahead long before must not make fresh
    /// records look old.
    @Test func retentionIsNotFooledBySegmentsMadeAhead() throws {
        let scratch = ScratchLog("pretouch-trim")
        let log = try scratch.create(segmentSize: 256 << 10)
        let pretoucher = try log.pretoucher(lead: 64 << 10, interval: .microseconds(50))
        defer { pretoucher.stop() }
        let appender = try log.appender()
        var i = 0
        while log.nextPosition.position.offset < UInt32(140 << 10) { try appender.append(payload(i)); i += 1 }
        #expect(eventually { FileSystem.exists(log.segmentPath(1)) })
        usleep(1_500_000) // segment 1's file is now 1.5 s old
        while log.nextPosition.position.segment == 0 { try appender.append(payload(i)); i += 1 }
        try appender.append("first of segment 1")
        // Segment 0's newest records are milliseconds old: not older than 1 s.
        #expect(try log.trim(maxAge: .seconds(1)) == [])
        #expect(log.segmentNumbers().first == 0)
        // Two segments in use (0, 1) and maybe 2 made ahead: 2 × 256 KiB is not over 512 KiB.
        #expect(try log.trim(maxBytes: 512 << 10) == [])
        #expect(try log.trim(maxBytes: 256 << 10) == [0])
        #expect(log.verify().isIntact)
    }

    @Test func refusesALeadOrIntervalOutOfRange() throws {
        let scratch = ScratchLog("pretouch-bad")
        let log = try scratch.create()
        for (lead, interval) in [(4096, Duration.microseconds(100)), (2 << 30, .microseconds(100)), (1 << 20, .nanoseconds(10)),
                                 (1 << 20, .seconds(5))] {
            #expect(throws: LogError.self) { _ = try log.pretoucher(lead: lead, interval: interval) }
        }
        do {
            _ = try log.pretoucher(lead: 4096)
            Issue.record("a 4 KiB lead was accepted")
        } catch {
            #expect("\(error)".contains("pretouch lead 4096 bytes must be from 64 KiB to 1 GiB"), "\(error)")
        }
    }
}
