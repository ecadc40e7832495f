#if canImport(Glibc)
import Glibc
#endif
import Testing
import ShmSystem
import ShmTestSupport

@Suite("shm log commands")
struct LogCLITests {
    @Test func appendTailStatVerifyTrim() throws {
        let directory = TestSupport.temporaryPath("clilog")
        defer { _ = try? TestSupport.runCLI(["log", "trim", directory, "--max-age", "0s"]); removeDirectoryOfFiles(directory) }
        let lines = (0..<2000).map { "line \($0) " + String(repeating: "=", count: $0 % 40) }
        let appended = try TestSupport.runCLI(["log", "append", directory, "--segment-size", "64KiB", "--durability", "records:100"],
                                              stdin: lines.joined(separator: "\n") + "\n")
        #expect(appended.status == .exited(0), "\(appended.error)")
        #expect(appended.error.contains("appended 2000 records"))
        let more = try TestSupport.runCLI(["log", "append", directory, "--message", "last one", "--verbose"])
        #expect(more.output.hasPrefix("2001 "))

        let tail = try TestSupport.runCLI(["log", "tail", directory])
        #expect(tail.output == (lines + ["last one"]).joined(separator: "\n") + "\n")
        let fromSequence = try TestSupport.runCLI(["log", "tail", directory, "--from", "1500", "--count", "2", "--json"])
        let rows = fromSequence.output.split(separator: "\n").compactMap { try? json(String($0)) as? [String: Any] }
        #expect(rows.map { $0["sequence"] as? Int } == [1500, 1501])
        #expect(rows.first?["text"] as? String == lines[1499])

        let stat = try TestSupport.runCLI(["log", "stat", directory, "--json"])
        let report = try #require(try json(stat.output) as? [String: Any])
        #expect(report["records"] as? Int == 2001 && report["first_sequence"] as? Int == 1 && report["last_sequence"] as? Int == 2001)
        let segments = report["segments"] as? Int ?? 0
        #expect(segments > 2)

        #expect(try TestSupport.runCLI(["log", "verify", directory]).status == .exited(0))
        // Corrupt one payload byte in the first segment: verify fails and names it; tail skips it.
        let victim = try #require(jsonLines(try TestSupport.runCLI(["log", "tail", directory, "--from", "300", "--count", "1", "--json"]).output).first)
        let position = try #require(victim["position"] as? String).split(separator: ":").compactMap { Int($0) }
        let fd = open(directory + "/" + String(repeating: "0", count: 10 - String(position[0]).count) + String(position[0]) + ".seg", O_RDWR)
        var byte: UInt8 = 0
        let offset = off_t(position[1] + 32 + 2) // a payload byte of record 300
        _ = pread(fd, &byte, 1, offset)
        byte ^= 0xFF
        _ = pwrite(fd, &byte, 1, offset)
        close(fd)
        let verify = try TestSupport.runCLI(["log", "verify", directory])
        #expect(verify.status == .exited(1))
        #expect(verify.output.contains("CORRUPT") && verify.output.contains("checksum mismatch"), "\(verify.output)")
        let damaged = try TestSupport.runCLI(["log", "tail", directory])
        #expect(damaged.status == .exited(0))
        #expect(damaged.error.contains("skipped: corrupt record"))
        #expect(damaged.output.split(separator: "\n").count == 2000)

        let trim = try TestSupport.runCLI(["log", "trim", directory, "--max-size", "128KiB"])
        #expect(trim.status == .exited(0) && trim.output.hasPrefix("deleted \(segments - 2) segment"), "\(trim.output)")
    }

    @Test func followWaitsForRecordsFromAnotherProcess() throws {
        let directory = TestSupport.temporaryPath("clifollow")
        defer { removeDirectoryOfFiles(directory) }
        _ = try TestSupport.runCLI(["log", "append", directory, "--message", "existing"])
        let follower = try TestSupport.spawnCLI(["log", "tail", directory, "--from", "end", "--follow", "--count", "2", "--timeout", "20s"])
        usleep(200_000)
        _ = try TestSupport.runCLI(["log", "append", directory, "--message", "new 1", "--message", "new 2"])
        #expect(try follower.wait(timeout: .seconds(30)) == .exited(0), "\(follower.errorText)")
        #expect(follower.outputText == "new 1\nnew 2\n")
    }

    @Test func benchLogMeasuresEveryPolicyAndTheTailer() throws {
        let result = try TestSupport.runCLI(["bench", "log", "--records", "2000", "--sync-records", "20", "--tail-records", "500",
                                             "--repeat", "1", "--json"], timeout: .seconds(120))
        #expect(result.status == .exited(0), "\(result.error)")
        let rows = jsonLines(result.output)
        let names = rows.compactMap { $0["mechanism"] as? String }
        #expect(names.contains("log append, no msync") && names.contains("log append, msync every append"), "\(names)")
        #expect(names.contains("log append, exclusive, coarse clock") && names.contains("log append, exclusive, coarse, pretouched"))
        #expect(names.contains("write(), no fsync") && names.contains("write() + fsync") && names.contains("tailer end-to-end (other process)"))
        for row in rows {
            let p50 = row["p50_ns"] as? Int ?? 0, p99 = row["p99_ns"] as? Int ?? 0
            #expect(p50 > 0 && p50 <= p99, "\(row)")
        }
        #expect(rows.first { $0["mechanism"] as? String == "log append, no msync" }?["write_p50_ratio"] is Double)
    }

    @Test(arguments: [
        (["log", "tail", "/tmp/swift-shm-no-such-log"], "no log in"),
        (["log", "stat", "/tmp/swift-shm-no-such-log"], "no log in"),
        (["log", "tail", "/tmp", "--from", "yesterday"], "--from 'yesterday'"),
        (["log", "append", "/tmp/swift-shm-x", "--durability", "sometimes"], "durability 'sometimes'"),
        (["log", "trim", "/tmp/swift-shm-no-such-log"], "give --max-size"),
    ])
    func badLogInputFailsClearly(arguments: [String], message: String) throws {
        let result = try TestSupport.runCLI(arguments)
        #expect(result.status != .exited(0))
        #expect(result.error.contains(message), "stderr: \(result.error)")
    }
}


@Suite("shm log pretouch")
struct LogPretouchCLITests {
    /// A pretoucher in its own process serves an appender in another: the
    /// appender rolls through many segments the pretoucher made ahead; on
    /// SIGTERM it says what it did; a second one SIGKILLed mid-stream
    /// harms nothing; every line reads back and the log verifies.
    @Test func pretouchesForAnAppenderInAnotherProcessAndDiesHarmlessly() throws {
        let directory = TestSupport.temporaryPath("clipretouch")
        defer { removeDirectoryOfFiles(directory) }
        #expect(try TestSupport.runCLI(["log", "append", directory, "--segment-size", "64KiB", "--message", "line 0"]).status == .exited(0))
        let pretoucher = try TestSupport.spawnCLI(["log", "pretouch", directory, "--lead", "64KiB", "--interval", "50us"])
        let ready = try pretoucher.readLine(timeout: .seconds(20))
        #expect(ready == "pretouching \(directory): 65536 bytes ahead of the claim", "\(ready ?? "nil") \(pretoucher.errorText)")
        let lines = (1..<3000).map { "line \($0) " + String(repeating: "+", count: $0 % 50) }
        let appended = try TestSupport.runCLI(["log", "append", directory], stdin: lines.joined(separator: "\n") + "\n")
        #expect(appended.status == .exited(0), "\(appended.error)")
        pretoucher.kill(SIGTERM)
        #expect(try pretoucher.wait(timeout: .seconds(10)) == .exited(128 + SIGTERM))
        let summary = pretoucher.outputText.split(separator: "\n").last.map(String.init) ?? ""
        let numbers = summary.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
        #expect(summary.hasPrefix("pretouched ") && numbers.count == 3, "\(summary)")
        if numbers.count == 3 {
            #expect(numbers[0] >= 64 << 10 && numbers[1] > 0 && numbers[2] == 0, "\(summary)")
        }

        // One killed with SIGKILL while another process appends.
        let doomed = try TestSupport.spawnCLI(["log", "pretouch", directory, "--lead", "128KiB", "--interval", "20us"])
        #expect(try doomed.readLine(timeout: .seconds(20)) != nil)
        let appender = try TestSupport.spawnCLI(["log", "append", directory, "--pretouch",
                                                 "--message", "after 1", "--message", "after 2", "--message", "after 3"])
        usleep(2_000)
        doomed.kill()
        _ = try doomed.wait(timeout: .seconds(10))
        #expect(try appender.wait(timeout: .seconds(30)) == .exited(0), "\(appender.errorText)")
        let tail = try TestSupport.runCLI(["log", "tail", directory])
        #expect(tail.output == (["line 0"] + lines + ["after 1", "after 2", "after 3"]).joined(separator: "\n") + "\n")
        let verify = try TestSupport.runCLI(["log", "verify", directory])
        #expect(verify.status == .exited(0), "\(verify.output)")
    }

    @Test func badInputIsAClearError() throws {
        let missing = try TestSupport.runCLI(["log", "pretouch", TestSupport.temporaryPath("clipretouch-none"), "--duration", "1s"])
        #expect(missing.status == .exited(1) && missing.error.contains("no log in"), "\(missing.error)")
        let directory = TestSupport.temporaryPath("clipretouch-bad")
        defer { removeDirectoryOfFiles(directory) }
        _ = try TestSupport.runCLI(["log", "append", directory, "--message", "x"])
        let small = try TestSupport.runCLI(["log", "pretouch", directory, "--lead", "4KiB"])
        #expect(small.status == .exited(1) && small.error.contains("pretouch lead 4096 bytes must be from 64 KiB to 1 GiB"), "\(small.error)")
        let timed = try TestSupport.runCLI(["log", "pretouch", directory, "--duration", "200ms"])
        #expect(timed.status == .exited(0) && timed.output.contains("0 failure(s)"), "\(timed.output) \(timed.error)")
    }
}
