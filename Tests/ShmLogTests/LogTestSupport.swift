#if canImport(Glibc)
import Glibc
#endif
import Testing
import ShmTestSupport
import ShmSystem
@testable import ShmLog

/// A fresh log directory, removed when the scope ends.
final class ScratchLog {
    let directory: String
    init(_ label: String) { directory = TestSupport.temporaryPath(label) }
    deinit { removeDirectoryOfFiles(directory) }

    func create(segmentSize: Int = 64 << 10, granularity: Int = 512) throws -> Log {
        try Log.create(directory: directory, config: LogConfig(segmentSize: segmentSize, indexGranularity: granularity))
    }
}

/// Reads every record from the start until none is waiting.
func readAll(_ log: Log, from start: TailStart = .start) throws -> [LogRecord] {
    let tailer = try log.tailer(from: start)
    tailer.abandonedClaimTimeout = .zero // no appender is writing: holes are abandoned claims
    var records: [LogRecord] = []
    while let record = try tailer.tryNext() { records.append(record) }
    return records
}

/// Overwrites one byte of a file in place (`pwrite`).
func corruptByte(of path: String, at offset: Int) {
    let fd = open(path, O_RDWR)
    precondition(fd >= 0)
    var byte: UInt8 = 0
    _ = pread(fd, &byte, 1, off_t(offset))
    byte ^= 0x5A
    _ = pwrite(fd, &byte, 1, off_t(offset))
    close(fd)
}

func payload(_ index: Int) -> String { "record \(index) " + String(repeating: "#", count: index % 53) }

/// Appends `payload(0..<count)` with an appender that is gone afterwards
/// (so the next appender runs recovery); returns what was appended.
func appendPayloads(_ log: Log, count: Int) throws -> [AppendedRecord] {
    let appender = try log.appender()
    return try (0..<count).map { i in try appender.append(payload(i)) }
}

/// Reads until nothing is waiting, stepping past corrupt records: the
/// sequences returned and those reported corrupt.
func drain(_ tailer: LogTailer) -> (seen: [UInt64], corrupt: [UInt64]) {
    var seen: [UInt64] = [], corrupt: [UInt64] = []
    while true {
        switch Result(catching: { () throws(LogError) in try tailer.tryNext() }) {
        case .success(let record?): seen.append(record.sequence)
        case .success(nil): return (seen, corrupt)
        case .failure(let error):
            guard case .corruptRecord(_, let sequence, _) = error else { Issue.record("\(error)"); return (seen, corrupt) }
            corrupt.append(sequence ?? 0)
        }
    }
}

/// One round of the kill tests: appender peers (`log-append`, one per tag)
/// SIGKILLed after a random pause; then the first appender to open recovers
/// the log, which must verify, hold every peer's records in order and every
/// acknowledged one (`acknowledged` collects each tag's last "ack"), and
/// take a "check ROUND" record.
func killAppenderPeersAndRecover(_ log: Log, directory: String, tags: [String], durability: String, round: Int,
                                 pause: ClosedRange<UInt32>, acknowledged: inout [String: Int]) throws {
    let peers = try tags.map { try TestSupport.spawnPeer(["log-append", directory, $0, "0", durability]) }
    for peer in peers { #expect(try peer.readLine(timeout: .seconds(20)) == "ready") }
    usleep(UInt32.random(in: pause))
    for peer in peers { peer.kill() }
    for (tag, peer) in zip(tags, peers) {
        _ = try peer.wait(timeout: .seconds(10))
        acknowledged[tag] = lastAck(peer.outputText) ?? -1
    }
    // Recovery runs in the first appender to open after the kill.
    let appender = try log.appender()
    #expect(appender.recovery != nil)
    let verification = log.verify()
    #expect(verification.isIntact, "round \(round): \(verification.problems)")
    var last: [String: Int] = [:]
    for record in try readAll(log) {
        guard let (tag, index) = parsePeerPayload(record.text) else {
            #expect(record.text.hasPrefix("check "), "unexpected record \(record.text)")
            continue
        }
        #expect(index == (last[tag] ?? -1) + 1, "\(tag): \(index) after \(last[tag] ?? -1)")
        last[tag] = index
    }
    for (tag, acked) in acknowledged {
        #expect((last[tag] ?? -1) >= acked, "\(tag): acknowledged \(acked), log has \(last[tag] ?? -1)")
    }
    try appender.append("check \(round)")
}
