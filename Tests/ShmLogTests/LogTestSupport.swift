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
