#if canImport(Glibc)
import Glibc
#endif
import Testing
import ShmTestSupport
@testable import ShmLog

/// A fresh log directory, removed when the scope ends.
final class ScratchLog {
    let directory: String
    init(_ label: String) { directory = TestSupport.temporaryPath(label) }
    deinit { removeTree(directory) }

    func create(segmentSize: Int = 64 << 10, granularity: Int = 512) throws -> Log {
        try Log.create(directory: directory, config: LogConfig(segmentSize: segmentSize, indexGranularity: granularity))
    }
}

/// `rm -rf` of a directory of plain files.
func removeTree(_ path: String) {
    if let dir = opendir(path) {
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { unlink(path + "/" + name) }
        }
        closedir(dir)
    }
    rmdir(path)
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
