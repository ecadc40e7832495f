#if canImport(Glibc)
import Glibc
#endif
import Testing
import ShmSystem
import ShmTestSupport

/// Every kind of damage to a log's files is named by `shm log verify`
/// (exit 1) and warned about by `shm log stat`; a file cut under a live
/// tailer ends it with the typed error, never SIGBUS or a hang.
@Suite("shm log: damage is always seen")
struct LogDamageCLITests {
    /// A 3,000-record log of three or more 64 KiB segments.
    func makeLog(_ label: String, records: Int = 3000) throws -> String {
        let directory = TestSupport.temporaryPath(label)
        let lines = (0..<records).map { "record \($0) " + String(repeating: "~", count: 20) }
        let appended = try TestSupport.runCLI(["log", "append", directory, "--segment-size", "64KiB"],
                                              stdin: lines.joined(separator: "\n") + "\n")
        #expect(appended.status == .exited(0), "\(appended.error)")
        #expect(try TestSupport.runCLI(["log", "verify", directory]).status == .exited(0))
        return directory
    }

    func segment(_ directory: String, _ number: Int) -> String {
        directory + "/" + String(repeating: "0", count: 10 - String(number).count) + String(number) + ".seg"
    }

    func overwrite(_ path: String, at offset: Int, with bytes: [UInt8]) {
        let fd = open(path, O_RDWR)
        _ = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(offset)) }
        close(fd)
    }

    func expectDamage(_ directory: String, mentioning words: [String], _ comment: String) throws {
        let verify = try TestSupport.runCLI(["log", "verify", directory])
        #expect(verify.status == .exited(1), "\(comment): \(verify.output)")
        for word in words { #expect(verify.output.contains(word), "\(comment): \(verify.output)") }
        let stat = try TestSupport.runCLI(["log", "stat", directory])
        #expect(stat.status == .exited(0))
        #expect(stat.error.contains("warning:"), "\(comment): \(stat.error)")
    }

    /// The instance from issue #9: bytes 8-11 of segment 1 (its layout
    /// version) overwritten; verify said "0 problem(s)".
    @Test func aDamagedSegmentHeaderIsReported() throws {
        let directory = try makeLog("hdrdmg")
        defer { removeDirectoryOfFiles(directory) }
        overwrite(segment(directory, 1), at: 8, with: [0xFF, 0xFF, 0xFF, 0xFF])
        try expectDamage(directory, mentioning: ["0000000001.seg", "version"], "header")
    }

    @Test func aMissingSegmentIsReported() throws {
        let directory = try makeLog("missing")
        defer { removeDirectoryOfFiles(directory) }
        #expect(unlink(segment(directory, 1)) == 0)
        try expectDamage(directory, mentioning: ["segment 1 is missing"], "missing")
    }

    @Test func aMiddleSegmentCutShortIsReported() throws {
        let directory = try makeLog("cutmid")
        defer { removeDirectoryOfFiles(directory) }
        #expect(truncate(segment(directory, 1), 8192) == 0)
        try expectDamage(directory, mentioning: ["0000000001.seg", "8192 bytes"], "cut")
        // Tailers stop there with the typed error instead of jumping over it.
        let tail = try TestSupport.runCLI(["log", "tail", directory])
        #expect(tail.status == .exited(1), "\(tail.error)")
        #expect(tail.error.contains("0000000001.seg") && tail.error.contains("8192"), "\(tail.error)")
    }

    @Test func aDamagedIndexEntryIsReported() throws {
        let directory = try makeLog("index")
        defer { removeDirectoryOfFiles(directory) }
        // Entry 3 of segment 0 (at 128 + 3 × 32): its sequence changed.
        overwrite(segment(directory, 0), at: 128 + 3 * 32 + 8, with: [0x39, 0x30, 0, 0, 0, 0, 0, 0])
        try expectDamage(directory, mentioning: ["index entry 3"], "index")
    }

    @Test func aSequenceGapIsReported() throws {
        let directory = try makeLog("gap")
        defer { removeDirectoryOfFiles(directory) }
        // Record at the start of segment 0's data: turn its sequence 1 into 2,
        // so the log "starts at 2" (and then repeats 2): both are named.
        let stat = try TestSupport.runCLI(["log", "tail", directory, "--count", "1", "--json"])
        let position = try #require(jsonLines(stat.output).first?["position"] as? String).split(separator: ":").compactMap { Int($0) }
        overwrite(segment(directory, position[0]), at: position[1] + 16, with: [2, 0, 0, 0, 0, 0, 0, 0])
        let verify = try TestSupport.runCLI(["log", "verify", directory])
        #expect(verify.status == .exited(1), "\(verify.output)")
    }

    @Test func aDamagedMetaFileIsAnError() throws {
        let directory = try makeLog("meta", records: 10)
        defer { removeDirectoryOfFiles(directory) }
        overwrite(directory + "/log.meta", at: 0, with: [0xFF, 0xFF, 0xFF, 0xFF])
        let verify = try TestSupport.runCLI(["log", "verify", directory])
        #expect(verify.status == .exited(1), "\(verify.output) \(verify.error)")
        #expect(verify.error.contains("log.meta"), "\(verify.error)")
    }

    /// The instance from issue #9: `shm log tail --follow` died of SIGBUS
    /// (or hung) when its segment was cut; then append + verify said
    /// "intact" although records 1-3 were gone.
    @Test func aSegmentCutUnderAFollowingTailerEndsItWithTheTypedError() throws {
        let directory = TestSupport.temporaryPath("cuttail")
        defer { removeDirectoryOfFiles(directory) }
        for message in ["one", "two", "three"] {
            #expect(try TestSupport.runCLI(["log", "append", directory, "--segment-size", "64KiB", "--message", message]).status == .exited(0))
        }
        let tailer = try TestSupport.spawnCLI(["log", "tail", directory, "--follow"])
        for expected in ["one", "two", "three"] { #expect(try tailer.readLine(timeout: .seconds(20)) == expected) }
        #expect(truncate(segment(directory, 0), 4096) == 0)
        let status = try tailer.wait(timeout: .seconds(20))
        #expect(status == .exited(1), "\(tailer.errorText)")
        #expect(tailer.errorText.contains("0000000000.seg") && tailer.errorText.contains("4096"), "\(tailer.errorText)")
        // The next appender's recovery extends the file, and says so; verify
        // then names the lost sequences.
        let append = try TestSupport.runCLI(["log", "append", directory, "--message", "four"])
        #expect(append.status == .exited(0), "\(append.error)")
        let verify = try TestSupport.runCLI(["log", "verify", directory])
        #expect(verify.status == .exited(1), "\(verify.output)")
        #expect(verify.output.contains("1…3"), "\(verify.output)")
        let stat = try TestSupport.runCLI(["log", "stat", directory])
        #expect(stat.error.contains("cut to 4096 bytes"), "\(stat.error)")
    }
}
