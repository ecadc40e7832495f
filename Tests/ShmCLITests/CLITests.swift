#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
import ShmTestSupport
import Shm

/// Parses `text` as JSON.
func json(_ text: String) throws -> Any {
    try JSONSerialization.jsonObject(with: Data(text.utf8))
}

@Suite("shm command-line tool")
struct CLITests {
    @Test func createListStatRemove() throws {
        let name = TestSupport.uniqueName("cli")
        let created = try TestSupport.runCLI(["create", name, "--size", "64KiB", "--mode", "0640", "--json"])
        #expect(created.status == .exited(0), "\(created.error)")
        let report = try #require(try json(created.output) as? [String: Any])
        #expect(report["name"] as? String == name)
        #expect(report["data_size"] as? Int == 65536)
        #expect(report["mode"] as? String == "0640")

        let listed = try TestSupport.runCLI(["ls", "--json"])
        #expect(listed.status == .exited(0))
        let rows = try #require((try json(listed.output) as? [String: Any])?["segments"] as? [[String: Any]])
        let row = try #require(rows.first { $0["name"] as? String == name })
        #expect(row["size"] as? Int == 65536 + 4096)
        #expect(row["creator_alive"] as? Bool == false) // the `shm create` process has exited
        #expect(row["created_at"] is String)

        let table = try TestSupport.runCLI(["ls"])
        #expect(table.output.contains("NAME") && table.output.contains(name))

        let stat = try TestSupport.runCLI(["stat", name])
        #expect(stat.status == .exited(0))
        #expect(stat.output.contains("data size:   65536 bytes"))
        #expect(stat.output.contains("state:       ready"))

        let removed = try TestSupport.runCLI(["rm", name])
        #expect(removed.status == .exited(0))
        #expect(removed.output == "removed \(name)\n")
        let again = try TestSupport.runCLI(["rm", name])
        #expect(again.status == .exited(1))
        #expect(again.error.contains("no segment named '\(name)'"))
    }

    @Test(arguments: [
        (["create", "bad/name", "--size", "4096"], "contains '/'"),
        (["create", "ok-name", "--size", "0"], "at least 1 byte"),
        (["create", "ok-name", "--size", "12XB"], "unknown unit"),
        (["create", "ok-name", "--size", "4096", "--mode", "999"], "invalid mode"),
        (["create", "", "--size", "4096"], "empty"),
        (["stat", "no-such-segment-anywhere"], "no segment named"),
        (["rm", "no-such-segment-anywhere"], "no segment named"),
    ])
    func badInputFailsWithAClearMessage(arguments: [String], message: String) throws {
        let result = try TestSupport.runCLI(arguments)
        #expect(result.status != .exited(0))
        #expect(result.error.contains(message), "stderr: \(result.error)")
        #expect(result.output.isEmpty)
    }

    @Test func createTwiceFailsAndKeepsTheFirst() throws {
        let name = TestSupport.uniqueName("cli")
        defer { _ = try? TestSupport.runCLI(["rm", name]) }
        #expect(try TestSupport.runCLI(["create", name, "--size", "4096"]).status == .exited(0))
        let second = try TestSupport.runCLI(["create", name, "--size", "8192"])
        #expect(second.status == .exited(1))
        #expect(second.error.contains("already exists"))
        let stat = try TestSupport.runCLI(["stat", name, "--json"])
        #expect((try json(stat.output) as? [String: Any])?["data_size"] as? Int == 4096)
    }

    @Test func statOfAForeignObjectExplainsAndFails() throws {
        let name = try SegmentName(TestSupport.uniqueName("cli"))
        let fd = shm_open(name.posixName, O_RDWR | O_CREAT | O_EXCL, 0o600)
        try #require(fd >= 0)
        _ = ftruncate(fd, 8192)
        close(fd)
        defer { _ = shm_unlink(name.posixName) }
        let stat = try TestSupport.runCLI(["stat", name.name])
        #expect(stat.status == .exited(2))
        #expect(stat.output.contains("problem:") && stat.output.contains("not a swift-shm segment"))
        let listed = try TestSupport.runCLI(["ls"])
        #expect(listed.output.contains("unreadable"))
    }

    @Test func lsReportsTheSegmentOfAKilledProcessAsOwnedByADeadProcess() throws {
        try TestSupport.aroundDeadPeers {
            let name = TestSupport.uniqueName("cli")
            defer { _ = try? TestSupport.runCLI(["rm", name]) }
            let peer = try TestSupport.spawnPeer(["posix-hold", name, "4096"])
            #expect(try peer.readLine(timeout: .seconds(20)) == "ready")
            func row() throws -> [String: Any]? {
                let listed = try TestSupport.runCLI(["ls", "--json"])
                return ((try json(listed.output) as? [String: Any])?["segments"] as? [[String: Any]])?.first { $0["name"] as? String == name }
            }
            #expect(try row()?["creator_alive"] as? Bool == true)
            #expect(try row()?["creator_pid"] as? Int == Int(peer.pid))
            peer.kill(SIGKILL)
            _ = try peer.wait(timeout: .seconds(10))
            #expect(try row()?["creator_alive"] as? Bool == false)
            #expect(try TestSupport.runCLI(["ls"]).output.contains("no (dead)"))
        }
    }

    @Test func demoSharesFramesBetweenTwoProcessesAndTimesThemAgainstASocket() throws {
        let result = try TestSupport.runCLI(["demo", "--frames", "2", "--width", "64", "--height", "48", "--duration", "0.05"],
                                            timeout: .seconds(60))
        #expect(result.status == .exited(0), "\(result.error)")
        let lines = result.output.split(separator: "\n").map(String.init)
        let parents = Set(lines.filter { $0.hasPrefix("[parent") }.map { $0.split(separator: "]")[0] })
        let children = Set(lines.filter { $0.hasPrefix("[child") }.map { $0.split(separator: "]")[0] })
        #expect(parents.count == 1 && children.count == 1, "\(result.output)")
        // Each frame's checksum, as drawn by the parent and as read in place by the child.
        func checksums(_ who: String) -> [String] {
            lines.filter { $0.hasPrefix("[\(who)") && $0.contains("checksum ") }.map { String($0.split(separator: "checksum ")[1].prefix(16)) }
        }
        #expect(checksums("parent").count == 2 && checksums("parent") == checksums("child"), "\(result.output)")
        #expect(Set(checksums("parent")).count == 2)
        for row in ["publish/subscribe, zero-copy", "Unix domain socket", "publish/subscribe, 8 B sample"] {
            #expect(lines.contains { $0.hasPrefix(row) && $0.contains("9 KiB") || $0.hasPrefix(row) && $0.contains("8 B") }, "\(row): \(result.output)")
        }
        #expect(result.output.contains("What happened:") && result.output.contains("Next:"))
        // The last user gone, the service is gone.
        let parentPID = parents.first.map { $0.dropFirst("[parent ".count) } ?? "?"
        #expect(!ServiceDirectory.serviceNames().contains("demo.\(parentPID).frames"))
    }

    @Test func benchLatencyEmitsOneJSONObjectPerRow() throws {
        let result = try TestSupport.runCLI(["bench", "latency", "--mechanisms", "ring-spin,ring-block,pipe,futex",
                                             "--sizes", "8,4KiB", "--duration", "0.02", "--repeat", "1", "--json"],
                                            timeout: .seconds(120))
        #expect(result.status == .exited(0), "\(result.error)")
        let rows = result.output.split(separator: "\n").compactMap { try? json(String($0)) as? [String: Any] }
        // floor + 2 ring mechanisms × 2 sizes + pipe × 2 + futex (8 B only)
        #expect(rows.count == 1 + 4 + 2 + 1)
        for row in rows {
            #expect(row["mechanism"] is String && row["payload_bytes"] is Int)
            let p50 = row["p50_ns"] as? Int ?? 0, p99 = row["p99_ns"] as? Int ?? 0, p999 = row["p999_ns"] as? Int ?? 0
            #expect(p50 > 0 && p50 <= p99 && p99 <= p999, "\(row)")
        }
        #expect(rows.first?["mechanism"] as? String == "floor")
        #expect(rows.contains { $0["mechanism"] as? String == "ring-spin" && ($0["ratio_to_floor"] as? Double ?? 0) > 0 })
    }

    @Test func benchThroughputEmitsOneJSONObjectPerRow() throws {
        let result = try TestSupport.runCLI(["bench", "throughput", "--sizes", "64,4KiB", "--max-messages", "2000",
                                             "--repeat", "1", "--json"], timeout: .seconds(120))
        #expect(result.status == .exited(0), "\(result.error)")
        let rows = result.output.split(separator: "\n").compactMap { try? json(String($0)) as? [String: Any] }
        #expect(rows.count == 2 * 6)
        for row in rows {
            #expect((row["msgs_per_s"] as? Double ?? 0) > 0, "\(row)")
            #expect((row["bytes_per_s"] as? Double ?? 0) > 0)
        }
        // The stream floor is measured in the same run, and the ring is compared with it.
        let ring = rows.first { $0["mechanism"] as? String == "ring-zero-copy" && $0["payload_bytes"] as? Int == 64 }
        #expect((ring?["ratio_to_stream_floor"] as? Double ?? 0) > 0, "\(String(describing: ring))")
        #expect(rows.contains { $0["mechanism"] as? String == "stream-floor" && ($0["ratio_to_pipe"] as? Double ?? 0) > 0 })
    }

    @Test func benchPubSubEmitsLatencyAndThroughputRows() throws {
        let result = try TestSupport.runCLI(["bench", "pubsub", "--sizes", "8,4KiB", "--subscribers", "1,2", "--duration", "0.02",
                                             "--max-messages", "2000", "--repeat", "1", "--json"], timeout: .seconds(120))
        #expect(result.status == .exited(0), "\(result.error)")
        let rows = result.output.split(separator: "\n").compactMap { try? json(String($0)) as? [String: Any] }
        let latency = rows.filter { $0["kind"] as? String == "latency" && $0["mechanism"] as? String != "floor" }
        let throughput = rows.filter { $0["kind"] as? String == "throughput" }
        #expect(latency.count == 4 && throughput.count == 4, "\(rows)")
        for row in latency {
            let p50 = row["p50_ns"] as? Int ?? 0, p99 = row["p99_ns"] as? Int ?? 0
            #expect(p50 > 0 && p50 <= p99 && (row["ratio_to_floor"] as? Double ?? 0) > 0, "\(row)")
        }
        for row in throughput {
            let n = row["subscribers"] as? Int ?? 0, rate = row["msgs_per_s"] as? Double ?? 0
            #expect(rate > 0 && abs((row["deliveries_per_s"] as? Double ?? 0) - rate * Double(n)) < rate * 0.01, "\(row)")
        }
    }

    @Test func benchRequestResponseEmitsRoundTripsAndThroughput() throws {
        // Zero-copy (8 B and 1 MiB), then the copying calls.
        for arguments in [["--sizes", "8,1MiB"], ["--sizes", "8,64", "--copy"]] {
            let result = try TestSupport.runCLI(["bench", "rr", "--duration", "0.02", "--requests", "2000", "--repeat", "1", "--json"]
                                                    + arguments, timeout: .seconds(120))
            #expect(result.status == .exited(0), "\(result.error)")
            let rows = result.output.split(separator: "\n").compactMap { try? json(String($0)) as? [String: Any] }
            let latency = rows.filter { $0["kind"] as? String == "latency" && $0["mechanism"] as? String == "rr" }
            let pubsub = rows.filter { $0["kind"] as? String == "latency" && $0["mechanism"] as? String == "pubsub" }
            let throughput = rows.filter { $0["kind"] as? String == "throughput" }
            #expect(latency.count == 2 && pubsub.count == 1 && throughput.count == 2, "\(arguments): \(rows)")
            #expect((latency + pubsub).allSatisfy { ($0["p50_ns"] as? Int ?? 0) > 0 })
            #expect(throughput.allSatisfy { ($0["msgs_per_s"] as? Double ?? 0) > 0 && ($0["ratio_to_baseline"] as? Double ?? 0) > 0 })
        }
        let refused = try TestSupport.runCLI(["bench", "rr", "--sizes", "1MiB", "--copy"], timeout: .seconds(60))
        #expect(refused.status != .exited(0) && refused.error.contains("up to 4096 bytes"), "\(refused.error)")
    }

    @Test func benchMmapRunsAndVerifies() throws {
        let result = try TestSupport.runCLI(["bench", "mmap", "--ints", "1000", "--iterations", "20",
                                             "--large-size", "1MiB", "--large-iterations", "2", "--json"],
                                            timeout: .seconds(120))
        #expect(result.status == .exited(0), "\(result.error)")
        let rows = result.output.split(separator: "\n").compactMap { try? json(String($0)) as? [String: Any] }
        #expect(rows.count == 4)
        for row in rows {
            #expect((row["ratio"] as? Double ?? 0) > 0)
            #expect((row["read_write_ns"] as? [String: Any])?["p50"] is Int)
        }
    }
}
