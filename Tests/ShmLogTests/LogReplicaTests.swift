import Testing
import ShmTestSupport
@testable import ShmLog

/// `appendReplicated`: the replica side of log replication.
@Suite("Replica appends")
struct LogReplicaTests {
    @Test func aReplicaHasTheSourcesSequencesTimestampsBytesAndSkips() throws {
        let sourceDirectory = ScratchLog("src"), replicaDirectory = ScratchLog("rep")
        let source = try sourceDirectory.create(), replica = try replicaDirectory.create()
        let appender = try source.appender()
        try appender.append("first")
        do { _ = try appender.claim(length: 16) } // aborted: a skip record and a gap in the numbers
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
