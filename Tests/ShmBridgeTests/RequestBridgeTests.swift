#if canImport(Glibc)
import Glibc
#endif
import Testing
import Shm
import ShmTestSupport

@Suite("NATS bridge: request/response between two hosts", .serialized)
struct RequestBridgeTests {
    /// Clients here, the server on host B: every request answered with its
    /// whole stream of responses, in order, the last one final.
    @Test func clientsHereReachAServerOnAnotherHost() throws {
        guard let server = try NatsServerProcess.start(), let hostB = try IsolatedHost.make() else { return }
        let name = TestSupport.uniqueName("rr")
        let count = 20, parts = 3
        let serving = try hostB.spawn(TestSupport.peerPath, ["rr-serve", name, String(count), String(parts)])
        #expect(try serving.readLine(timeout: .seconds(30)) == "serving")
        let exporter = try BridgeProcess(try hostB.spawn(TestSupport.cliPath, ["bridge", "--url", server.url, "--export", name]))
        let node = try Node(name: "test-a")
        let service = try addService(node, name)
        let client = try service.client()
        let importer = try BridgeProcess(try TestSupport.spawnCLI(["bridge", "--url", server.url, "--import", name]))
        #expect(TestSupport.eventually(.seconds(20)) { service.liveServers == 1 }, "the bridge did not serve the service here")
        for i in 0..<Int64(count) {
            let pending = try client.send(AddRequest(left: i, right: 100))
            for part in 0..<parts {
                let (value, isFinal) = try pending.next(timeout: .seconds(10))
                #expect(value == AddResponse(sum: i + 100, part: Int64(part)))
                #expect(isFinal == (part == parts - 1))
            }
        }
        #expect(try serving.wait(timeout: .seconds(30)) == .exited(0))
        let a = try importer.stop(), b = try exporter.stop()
        #expect(a[name]?["out"] == UInt64(count) && a[name]?["in"] == UInt64(count * parts), "A: \(a)")
        #expect(b[name]?["in"] == UInt64(count) && b[name]?["out"] == UInt64(count * parts), "B: \(b)")
    }

    /// A client whose types differ from the server's on the other host: the
    /// serving bridge refuses, counts it, and the client times out as it
    /// would with a server that does not answer.
    @Test func aRequestOfAnotherTypeIsRefusedAndCounted() throws {
        guard let server = try NatsServerProcess.start(), let hostB = try IsolatedHost.make() else { return }
        let name = TestSupport.uniqueName("rrtype")
        let serving = try hostB.spawn(TestSupport.peerPath, ["rr-serve", name, "1", "1"])
        #expect(try serving.readLine(timeout: .seconds(30)) == "serving")
        defer { serving.kill() }
        let exporter = try BridgeProcess(try hostB.spawn(TestSupport.cliPath, ["bridge", "--url", server.url, "--export", name]))
        struct Wide: BitwiseCopyable { var a: Int64; var b: Int64; var c: Int64 }
        let node = try Node(name: "test-a")
        let service = try node.requestResponse(name, request: Wide.self, response: AddResponse.self, typeName: "swiftshm.tests.Add",
                                               config: .init(maxClients: 8, maxServers: 2, queueDepth: 16))
        let client = try service.client()
        let importer = try BridgeProcess(try TestSupport.spawnCLI(["bridge", "--url", server.url, "--import", name]))
        #expect(TestSupport.eventually(.seconds(20)) { service.liveServers == 1 })
        let pending = try client.send(Wide(a: 1, b: 2, c: 3))
        #expect(throws: ServiceError.self) { _ = try pending.response(timeout: .seconds(2)) }
        let a = try importer.stop(), b = try exporter.stop()
        #expect(b[name]?["type_mismatches"] == 1 && b[name]?["out"] == 0, "B: \(b)")
        #expect(a[name]?["local_drops"] == 1, "A: \(a)")
        #expect(exporter.process.errorText.contains("remote samples carry") || exporter.process.errorText.contains("swiftshm.tests.Add"),
                "\(exporter.process.errorText)")
    }
}
