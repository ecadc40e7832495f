import Testing
import ShmTestSupport
import ShmSystem
@testable import ShmLog

/// `appendReplicated`: the replica side of log replication.
@Suite("Replica appends")
struct LogReplicaTests {
    @Test func aReplicaHasTheSourcesSequencesTimestampsBytesAndSkips() throws {
        let sourceDirectory = ScratchLog("src"), replicaDirectory = ScratchLog("rep")
        let source = try sourceDirectory.create(), replica = try replicaDirectory.create()
        let appender = try source.appender()
        try appender.append("first")
        do { _ = try appender.claim(count: 16) } // aborted: a skip record and a gap in the numbers
        try appender.append("third")
        for _ in 0..<300 { try appender.append(String(repeating: "z", count: 200)) } // across segments
        let records = try readAll(source)
        #expect(records.count == 302 && records[1].sequence == 3)
        let replicaAppender = try replica.appender()
        for record in records {
            try record.bytes.withUnsafeBytes {
                _ = try replicaAppender.appendReplicated($0, sequence: record.sequence, timestamp: record.timestamp)
            }
        }
        func content(_ records: [LogRecord]) -> [String] { records.map { "\($0.sequence) \($0.timestamp) \($0.bytes)" } }
        #expect(content(try readAll(replica)) == content(records))
        let verification = replica.verify()
        #expect(verification.isIntact, "\(verification.problems)")
        #expect(verification.skipped == source.verify().skipped)
        // A record offered again (a redelivery) is refused by name; the log is unchanged.
        #expect { try records[0].bytes.withUnsafeBytes { _ = try replicaAppender.appendReplicated($0, sequence: 1, timestamp: 0) } }
            throws: { error in
                guard case LogError.replicaOutOfOrder(_, let next, let offered) = error else { return false }
                return next == records.last!.sequence + 1 && offered == 1
            }
        #expect(try readAll(replica).count == records.count)
    }

    @Test func anEmptyReplicaStartsWhereATrimmedSourceStarts() throws {
        let directory = ScratchLog("rep2")
        let replica = try directory.create()
        let appender = try replica.appender()
        let bytes: [UInt8] = [1, 2, 3]
        let record = try bytes.withUnsafeBytes { try appender.appendReplicated($0, sequence: 1_000_000, timestamp: 42) }
        #expect(record.sequence == 1_000_000 && record.timestamp == 42)
        #expect(try bytes.withUnsafeBytes { try appender.appendReplicated($0, sequence: 1_000_001, timestamp: 43) }.sequence == 1_000_001)
        let all = try readAll(replica)
        #expect(all.map(\.sequence) == [1_000_000, 1_000_001] && all.map(\.timestamp) == [42, 43])
        #expect(replica.verify().isIntact)
    }
}

@Suite("Coarse timestamps")
struct CoarseTimestampTests {
    /// Coarse stamps: never ahead of the precise clock, behind it by about a
    /// tick (more after idle periods: a tickless kernel updates the coarse
    /// clock only when a CPU takes a tick — bounded here by 100 ms), and
    /// non-decreasing in one appender.
    @Test func coarseStampsLagThePreciseClockByAboutATick() throws {
        let scratch = ScratchLog("coarse")
        let log = try scratch.create()
        let appender = try log.exclusiveAppender(timestamps: .coarse)
        #expect(appender.timestamps == .coarse)
        #expect(coarseWallClockResolution > 0 && coarseWallClockResolution <= 10_000_000, "tick \(coarseWallClockResolution) ns")
        var previous: UInt64 = 0, maximumLag: UInt64 = 0
        for i in 0..<2000 {
            let before = wallClockNanoseconds()
            let record = try appender.append("c\(i)")
            let after = wallClockNanoseconds()
            #expect(record.timestamp >= previous)
            #expect(record.timestamp <= after, "stamp \(record.timestamp) ahead of the precise clock \(after)")
            maximumLag = max(maximumLag, before > record.timestamp ? before - record.timestamp : 0)
            previous = record.timestamp
        }
        print("coarse clock: tick \(coarseWallClockResolution) ns, largest lag behind the precise clock \(maximumLag) ns")
        #expect(maximumLag <= 100_000_000)
        #expect(try readAll(log).map(\.timestamp).allSatisfy { $0 > 0 })
    }
}
