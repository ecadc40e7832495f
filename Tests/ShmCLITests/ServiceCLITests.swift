#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
import ShmTestSupport
import Shm

/// Parses one JSON object per line.
func jsonLines(_ text: String) -> [[String: Any]] {
    text.split(separator: "\n").compactMap { try? json(String($0)) as? [String: Any] }
}

@Suite("shm service commands")
struct ServiceCLITests {
    /// `shm service` on a request/response service: clients and servers
    /// each own a pool and an inbox (MEMORY), a server's BACKLOG counts the
    /// requests waiting for it, its HELD the requests it holds in place.
    @Test func serviceShowsRequestResponsePortsWithTheirMemoryAndQueues() throws {
        let node = try Node(name: "cli-rr")
        let name = TestSupport.uniqueName("clirr")
        let service = try node.requestResponse(name, request: Int64.self, response: Int64.self,
                                               config: .init(maxClients: 2, maxServers: 1, queueDepth: 4))
        let client = try service.client(), server = try service.server()
        for i in 0..<3 { _ = try client.send(Int64(i)) }
        let held = try server.receiveInPlace(timeout: .seconds(1))
        let shown = try TestSupport.runCLI(["service", name, "--json"])
        #expect(shown.status == .exited(0), "\(shown.error)")
        let report = try #require(try json(shown.output) as? [String: Any])
        #expect(report["pattern"] as? String == "request/response")
        let ports = report["ports"] as? [[String: Any]] ?? []
        let clientPort = try #require(ports.first { $0["kind"] as? String == "client" })
        let serverPort = try #require(ports.first { $0["kind"] as? String == "server" })
        #expect((clientPort["memory_bytes"] as? Int ?? 0) > 0 && (serverPort["memory_bytes"] as? Int ?? 0) > 0, "\(ports)")
        #expect(serverPort["backlog"] as? Int == 2 && serverPort["delivered"] as? Int == 3 && serverPort["held"] as? Int == 3, "\(serverPort)")
        #expect(clientPort["backlog"] as? Int == 0, "\(clientPort)")
        withExtendedLifetime(held) {}
    }

    /// `shm service` shows a growing pool's footprint: its segments (POOL),
    /// chunks and their size, and MEMORY over every segment — a fraction of
    /// what reserving would take. `shm pub --pool` refuses what it does not know.
    @Test func serviceShowsAGrowingPoolsFootprint() throws {
        let node = try Node(name: "cli-grow")
        let name = TestSupport.uniqueName("cligrow")
        let service = try growthService(node, name)
        let publisher = try service.publisher(), subscriber = try service.subscriber()
        #expect(try publisher.waitForSubscribers(1, timeout: .seconds(5)))
        for _ in 0..<3 { try publisher.send(copyOf: [UInt8](repeating: 1, count: 100_000)) } // chunks of 128 KiB
        let footprint = publisher.footprint
        #expect(footprint.segments == 2 && footprint.chunks == 16 && footprint.chunkCapacity == 128 << 10, "\(footprint)")
        let shown = try TestSupport.runCLI(["service", name, "--json"])
        #expect(shown.status == .exited(0), "\(shown.error)")
        let report = try #require(try json(shown.output) as? [String: Any])
        let port = try #require((report["ports"] as? [[String: Any]] ?? []).first { $0["kind"] as? String == "publisher" })
        #expect(port["pool_segments"] as? Int == 2 && port["pool_chunks"] as? Int == 16, "\(port)")
        #expect(port["pool_chunk_capacity"] as? Int == 128 << 10, "\(port)")
        let memory = port["memory_bytes"] as? Int ?? 0
        #expect(memory >= footprint.bytes && memory < 4 << 20, "\(memory) bytes; reserving would take 560 MB")
        let text = try TestSupport.runCLI(["service", name])
        #expect(text.output.contains("POOL") && text.output.contains("2 seg, 16 × 128 KiB"), "\(text.output)")
        let refused = try TestSupport.runCLI(["pub", name + ".x", "--pool", "elastic", "--message", "hi"])
        #expect(refused.status != .exited(0) && refused.error.contains("reserved, growing or automatic"), "\(refused.error)")
        withExtendedLifetime(subscriber) {}
    }

    @Test func pubAndSubAreTwoProcessesOfOneBytesService() throws {
        let name = TestSupport.uniqueName("clisvc")
        let sub = try TestSupport.spawnCLI(["sub", name, "--count", "5", "--timeout", "30s", "--json"])
        let fromArguments = try TestSupport.runCLI(["pub", name, "--message", "alpha", "--message", "beta", "--count", "2",
                                                    "--wait-subscribers", "1"])
        #expect(fromArguments.status == .exited(0), "\(fromArguments.error)")
        #expect(fromArguments.error.contains("published 4 samples to \(name)"))
        let fromStdin = try TestSupport.runCLI(["pub", name, "--wait-subscribers", "1"], stdin: "from stdin\n")
        #expect(fromStdin.status == .exited(0), "\(fromStdin.error)")
        #expect(try sub.wait(timeout: .seconds(30)) == .exited(0), "\(sub.errorText)")
        let lines = jsonLines(sub.outputText)
        #expect(lines.compactMap { $0["text"] as? String } == ["alpha", "beta", "alpha", "beta", "from stdin"])
        #expect(lines.allSatisfy { ($0["bytes"] as? Int ?? 0) > 0 && $0["publisher"] is String })
        // The last user removed the service.
        #expect(!ServiceDirectory.serviceNames().contains(name))
    }

    @Test func metricsAndOperatorLogOfAServiceAnotherProcessUsed() throws {
        try TestSupport.aroundDeadPeers {
            let name = TestSupport.uniqueName("climetrics")
            let sub = try TestSupport.spawnCLI(["sub", name, "--count", "3", "--timeout", "30s"])
            let pub = try TestSupport.spawnCLI(["pub", name, "--message", "one", "--count", "1000000", "--interval", "1ms",
                                                "--wait-subscribers", "1"])
            #expect(try sub.wait(timeout: .seconds(30)) == .exited(0), "\(sub.errorText)")
            #expect(TestSupport.eventually { (try? ServiceDirectory.inspect(name).ports.first { $0.kind == "publisher" }?.sent ?? 0) ?? 0 >= 3 })
            let metrics = try TestSupport.runCLI(["metrics", "--service", name])
            #expect(metrics.status == .exited(0), "\(metrics.error)")
            #expect(metrics.output.contains("# TYPE shm_publisher_samples_sent_total counter"), "\(metrics.output)")
            #expect(metrics.output.contains("shm_service_ports{service=\"\(name)\",kind=\"publisher\"} 1"), "\(metrics.output)")
            let service = try TestSupport.runCLI(["service", name])
            #expect(service.output.contains("memory:") && service.output.contains("SENT"), "\(service.output)")
            // Kill the publisher: `cleanup --log-level notice` says what it reclaimed, on stderr.
            pub.kill(SIGKILL)
            _ = try pub.wait(timeout: .seconds(10))
            let silent = try TestSupport.runCLI(["service", name])
            #expect(silent.error.isEmpty, "\(silent.error)")
            let cleanup = try TestSupport.runCLI(["cleanup", "--log-level", "notice"])
            #expect(cleanup.status == .exited(0), "\(cleanup.error)")
            #expect(cleanup.error.contains("reclaimed the port of a dead process") && cleanup.error.contains(name), "\(cleanup.error)")
        }
    }

    @Test func typedServiceSeenFromTheToolsWhileAPeerPublishes() throws {
        let name = TestSupport.uniqueName("clityped")
        let peer = try TestSupport.spawnPeer(["ps-pub-forever", name, "7", "1000", "1"])
        defer {
            try? TestSupport.aroundDeadPeers {
                peer.kill(SIGKILL)
                _ = try peer.wait(timeout: .seconds(10))
                _ = try TestSupport.runCLI(["cleanup"])
            }
        }
        #expect(try peer.readLine(timeout: .seconds(20))?.hasPrefix("publisher") == true)

        // `shm sub` reads any payload type as bytes: the peer's 16-byte TestSample, producer 7 first.
        let sub = try TestSupport.runCLI(["sub", name, "--count", "2", "--timeout", "20s", "--json"])
        #expect(sub.status == .exited(0), "\(sub.error)")
        let samples = jsonLines(sub.output)
        #expect(samples.count == 2)
        #expect(samples.allSatisfy { $0["bytes"] as? Int == 16 && ($0["hex"] as? String)?.hasPrefix("07000000") == true })

        // `shm service` shows the configuration and the live publisher.
        let shown = try TestSupport.runCLI(["service", name, "--json"])
        #expect(shown.status == .exited(0), "\(shown.error)")
        let report = try #require(try json(shown.output) as? [String: Any])
        #expect(report["pattern"] as? String == "publish/subscribe")
        #expect((report["payload"] as? String)?.contains("TestSample") == true)
        let ports = report["ports"] as? [[String: Any]] ?? []
        #expect(ports.contains { $0["kind"] as? String == "publisher" && $0["pid"] as? Int == Int(peer.pid) && $0["alive"] as? Bool == true })
        let table = try TestSupport.runCLI(["service", name])
        #expect(table.output.contains("history:") && table.output.contains("publisher") && table.output.contains("HELD"))

        // `shm ls` lists it with its node.
        let listed = try TestSupport.runCLI(["ls", "--json"])
        let everything = try #require(try json(listed.output) as? [String: Any])
        let services = everything["services"] as? [[String: Any]] ?? []
        let entry = try #require(services.first { $0["name"] as? String == name })
        #expect((entry["ports"] as? [String: Int])?["publisher"] == 1)
        #expect((everything["nodes"] as? [[String: Any]] ?? []).contains { $0["pid"] as? Int == Int(peer.pid) })
        #expect(try TestSupport.runCLI(["ls"]).output.contains("SERVICE"))

        // `shm hz` measures its rate (the peer publishes every millisecond: well above 10/s, below 1100/s).
        let hz = try TestSupport.runCLI(["hz", name, "--window", "300ms", "--duration", "1s", "--json"])
        #expect(hz.status == .exited(0), "\(hz.error)")
        let windows = jsonLines(hz.output)
        #expect(windows.count >= 2)
        #expect(windows.allSatisfy { ($0["msgs_per_s"] as? Double ?? 0) > 10 && ($0["msgs_per_s"] as? Double ?? 0) < 1100 }, "\(windows)")

        // `shm pub` refuses to send bytes into a typed service.
        let pub = try TestSupport.runCLI(["pub", name, "--message", "x"])
        #expect(pub.status != .exited(0))
        #expect(pub.error.contains("TestSample") && pub.error.contains("sends bytes"), "\(pub.error)")
    }

    @Test func cleanupRemovesTheLeftoversOfAKilledPublisher() throws {
        try TestSupport.aroundDeadPeers {
            let name = TestSupport.uniqueName("clicleanup")
            let peer = try TestSupport.spawnPeer(["ps-pub-forever", name, "1", "1000", "0"])
            #expect(try peer.readLine(timeout: .seconds(20))?.hasPrefix("publisher") == true)
            peer.kill(SIGKILL)
            _ = try peer.wait(timeout: .seconds(10))
            let shown = try TestSupport.runCLI(["service", name])
            #expect(shown.output.contains("no (dead)"))
            let cleaned = try TestSupport.runCLI(["cleanup", "--json"])
            #expect(cleaned.status == .exited(0), "\(cleaned.error)")
            let report = try #require(try json(cleaned.output) as? [String: Any])
            #expect((report["removed_services"] as? [String])?.contains(name) == true)
            #expect((report["dead_ports"] as? [String])?.contains { $0.hasPrefix(name) } == true)
            let gone = try TestSupport.runCLI(["service", name])
            #expect(gone.status != .exited(0))
            #expect(gone.error.contains("no service named '\(name)'"))
            #expect(!SegmentDirectory.list().contains { $0.name.name.hasPrefix("svc.\(name)") })
        }
    }

    @Test(arguments: [
        (["service", "no-such-service-here"], "no service named"),
        (["service", "bad/name"], "invalid name"),
        (["sub", "whatever", "--timeout", "soon"], "invalid duration"),
        (["hz", "whatever", "--window", "fast"], "invalid duration"),
    ])
    func badServiceInputFailsClearly(arguments: [String], message: String) throws {
        let result = try TestSupport.runCLI(arguments)
        #expect(result.status != .exited(0))
        #expect(result.error.contains(message), "stderr: \(result.error)")
    }

    @Test func subGivesUpAfterItsTimeout() throws {
        let name = TestSupport.uniqueName("cliquiet")
        let start = monotonicNanoseconds()
        let result = try TestSupport.runCLI(["sub", name, "--timeout", "300ms"])
        #expect(result.status == .exited(1))
        #expect(result.error.contains("no sample within"), "\(result.error)")
        #expect(monotonicNanoseconds() - start >= 300_000_000)
        #expect(!ServiceDirectory.serviceNames().contains(name))
    }

    /// The examples the README points to run between two real processes.
    @Test func examplesRunBetweenProcesses() throws {
        let expectations: [(String, [String])] = [
            ("example-pubsub", ["subscriber: tick 10 at (10.0, 0.5, -1.0)", "subscriber: lost 0 sample(s)", "subscriber exited with status 0"]),
            ("example-request-response", ["client: 40 + 2 = 42", "client: streamed [1, 2, 3, 4, 5]", "server exited with status 0"]),
            ("example-events", ["child: event 3", "parent: child acknowledged [2]", "child exited with status 0"]),
            // 20 sent into an 8-deep inbox, 10 read: 8 wait, 2 were overwritten.
            ("example-metrics", ["# TYPE shm_publisher_samples_sent_total counter", "shm_publisher_samples_sent_total{service=\"example.metrics.",
                                 "} 20\n", "shm_subscriber_backlog_samples{service=\"example.metrics.", "} 8.0", "shm_subscriber_samples_lost_total"]),
        ]
        for (example, lines) in expectations {
            let child = try ChildProcess.spawn(TestSupport.productsDirectory + "/" + example, captureOutput: true)
            let status = try child.wait(timeout: .seconds(60))
            #expect(status == .exited(0), "\(example): \(child.errorText)")
            for line in lines { #expect(child.outputText.contains(line), "\(example) printed:\n\(child.outputText)") }
        }
    }
}
