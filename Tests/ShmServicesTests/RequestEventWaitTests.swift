#if canImport(Glibc)
import Glibc
#endif
import Testing
import ShmTestSupport
@testable import Shm

@Suite("Request/response, events and wait sets")
struct RequestEventWaitTests {
    @Test func requestAndStreamedResponsesInOneProcess() throws {
        let node = try Node(name: "unit")
        let service = try addService(node, TestSupport.uniqueName("rr"))
        let client = try service.client(), server = try service.server()
        let first = try client.send(AddRequest(left: 1, right: 2))
        let second = try client.send(AddRequest(left: 10, right: 20))
        #expect(try server.tryReceive()?.request.left == 1)
        let active = try server.receive(timeout: .seconds(1))
        for part in 0..<3 { try active.respond(AddResponse(sum: 30, part: Int64(part)), final: part == 2) }
        // Responses for the second request arrive first; the first is still waited for.
        #expect(throws: ServiceError.timedOut(.milliseconds(50))) { try first.response(timeout: .milliseconds(50)) }
        var parts: [AddResponse] = []
        while true {
            let (value, isFinal) = try second.next()
            parts.append(value)
            if isFinal { break }
        }
        #expect(parts == (0..<3).map { AddResponse(sum: 30, part: $0) })
        #expect(service.liveServers == 1)
    }

    /// Requests answered from several threads at once each get their own
    /// answer (messages are built on each call's stack), and a zero
    /// timeout on an empty queue is a timeout, not a crash.
    @Test func requestsAnsweredConcurrentlyGetTheirOwnResponses() async throws {
        let node = try Node(name: "unit")
        let service = try node.requestResponse(TestSupport.uniqueName("rrpar"), request: AddRequest.self, response: AddResponse.self,
                                               config: .init(maxClients: 2, maxServers: 1, queueDepth: 256))
        let client = try service.client(), server = try service.server()
        #expect(throws: ServiceError.self) { _ = try server.receive(timeout: .zero) }
        let pending = try (0..<200).map { i in try client.send(AddRequest(left: Int64(i), right: 1)) }
        let requests = try (0..<200).map { _ in try server.receive(timeout: .seconds(1)) }
        struct Handed: @unchecked Sendable { let request: ActiveRequest<AddRequest, AddResponse> }
        await withTaskGroup(of: Void.self) { group in
            for handed in requests.map(Handed.init) {
                group.addTask {
                    let r = handed.request
                    _ = try? r.respond(AddResponse(sum: r.request.left + r.request.right, part: r.request.left))
                }
            }
        }
        for (i, response) in pending.enumerated() {
            let value = try response.response(timeout: .seconds(2))
            #expect(value == AddResponse(sum: Int64(i) + 1, part: Int64(i)))
        }
    }

    @Test func clientsAndServersInOtherProcesses() throws {
        let name = TestSupport.uniqueName("rr")
        let node = try Node(name: "test")
        let service = try addService(node, name)
        let server = try TestSupport.spawnPeer(["rr-serve", name, "300", "1"])
        #expect(try server.readLine(timeout: .seconds(20)) == "serving")
        let clients = try (0..<3).map { _ in try TestSupport.spawnPeer(["rr-client", name, "100"]) }
        for client in clients { try expectSuccess(client, "client") }
        try expectSuccess(server, "server")
        // And a stream from another process to this one.
        let streamer = try TestSupport.spawnPeer(["rr-serve", name, "1", "5"])
        #expect(try streamer.readLine(timeout: .seconds(20)) == "serving")
        let client = try service.client()
        let pending = try client.send(AddRequest(left: 4, right: 5))
        var parts: [Int64] = []
        while true {
            let (value, isFinal) = try pending.next(timeout: .seconds(10))
            #expect(value.sum == 9)
            parts.append(value.part)
            if isFinal { break }
        }
        #expect(parts == [0, 1, 2, 3, 4])
        try expectSuccess(streamer)
    }

    @Test func serverKilledMidRequestThenAnotherServerTakesOver() throws {
        try TestSupport.aroundDeadPeers {
            let name = TestSupport.uniqueName("rr")
            let node = try Node(name: "test")
            let service = try addService(node, name)
            let client = try service.client()
            let doomed = try TestSupport.spawnPeer(["rr-serve-hang", name])
            #expect(try doomed.readLine(timeout: .seconds(20)) == "serving")
            let lost = try client.send(AddRequest(left: 1, right: 1))
            #expect(try doomed.readLine(timeout: .seconds(20)) == "got 1")
            doomed.kill(SIGKILL)
            _ = try doomed.wait(timeout: .seconds(10))
            // Detected: the waiting client is not stuck (bounded), the dead server is visible and reclaimed.
            #expect(throws: ServiceError.timedOut(.milliseconds(200))) { try lost.response(timeout: .milliseconds(200)) }
            #expect(service.liveServers == 0)
            #expect(try ServiceDirectory.inspect(name).ports.contains { $0.kind == "server" && !$0.alive })
            #expect(service.attachment.reclaimDeadPorts() >= 1)
            // Restarted: a new server answers new requests.
            let replacement = try TestSupport.spawnPeer(["rr-serve", name, "1", "1"])
            #expect(try replacement.readLine(timeout: .seconds(20)) == "serving")
            #expect(try client.send(AddRequest(left: 2, right: 3)).response(timeout: .seconds(10)).sum == 5)
            try expectSuccess(replacement)
        }
    }

    /// Documented: an event is a change seen after the listener exists.
    @Test func aLateListenerSeesOnlyWhatFiresAfterIt() throws {
        let node = try Node(name: "test")
        let service = try node.event(TestSupport.uniqueName("evlate"))
        let notifier = try service.notifier()
        try notifier.notify(2)
        let late = try service.listener()
        #expect(late.tryWait().isEmpty)
        try notifier.notify(5)
        #expect(late.wait(timeout: .seconds(5)) == [5])
    }

    @Test func eventsFromAnotherProcess() throws {
        let name = TestSupport.uniqueName("ev")
        let node = try Node(name: "test")
        let service = try node.event(name, config: .init(maxEventID: 15))
        let listener = try service.listener()
        let listeners = try (0..<2).map { _ in try TestSupport.spawnPeer(["ev-listen", name, "3,7"]) }
        for peer in listeners { #expect(try peer.readLine(timeout: .seconds(20)) == "listening") }
        let a = try TestSupport.spawnPeer(["ev-notify", name, "3", "5"])
        let b = try TestSupport.spawnPeer(["ev-notify", name, "7", "5"])
        try expectSuccess(a)
        try expectSuccess(b)
        for peer in listeners {
            try expectSuccess(peer)
            #expect(peer.outputText.contains("heard 3,7"))
        }
        var heard = Set<EventID>()
        while heard.count < 2 {
            let ids = listener.wait(timeout: .seconds(5))
            if ids.isEmpty { break }
            heard.formUnion(ids)
        }
        #expect(heard == [3, 7])
        #expect(listener.wait(timeout: .milliseconds(20)).isEmpty)
        #expect(throws: ServiceError.self) { try service.notifier().notify(16) }
    }

    @Test func waitSetWakesForWhicheverIsReady() throws {
        let node = try Node(name: "unit")
        let events = try node.event(TestSupport.uniqueName("ws-ev"))
        let listener = try events.listener(), notifier = try events.notifier()
        let samples = try node.publishSubscribe(TestSupport.uniqueName("ws-ps"), of: Int64.self)
        let subscriber = try samples.subscriber(), publisher = try samples.publisher()
        let requests = try addService(node, TestSupport.uniqueName("ws-rr"))
        let server = try requests.server(), client = try requests.client()
        let waitSet = WaitSet()
        let l = waitSet.attach(listener), s = waitSet.attach(subscriber), r = waitSet.attach(server)
        #expect(try waitSet.wait(timeout: .milliseconds(30)).isEmpty)
        try notifier.notify(1)
        #expect(try waitSet.wait(timeout: .seconds(5)) == [l])
        _ = listener.tryWait()
        try publisher.send(copyOf: 42)
        #expect(try waitSet.wait(timeout: .seconds(5)).contains(s))
        #expect(try subscriber.tryReceive()?.payload == 42)
        _ = try client.send(AddRequest(left: 1, right: 1))
        #expect(try waitSet.wait(timeout: .seconds(5)).contains(r))
        #expect(try server.tryReceive() != nil)
        // A wake from another thread while asleep.
        let start = monotonicNanoseconds()
        let thread = TestThread { usleep(50_000); try? notifier.notify(2) }
        #expect(try waitSet.wait(timeout: .seconds(10)) == [l])
        #expect(monotonicNanoseconds() - start < 5_000_000_000)
        thread.join()
    }

    @Test func asyncWaitsForSamplesEventsAndResponses() async throws {
        let node = try Node(name: "unit")
        let samples = try node.publishSubscribe(TestSupport.uniqueName("async-ps"), of: Int64.self)
        let subscriber = try samples.subscriber(), publisher = try samples.publisher()
        let reader = Task { () -> [Int64] in
            var values: [Int64] = []
            for try await value in subscriber.values {
                values.append(value)
                if values.count == 3 { break }
            }
            return values
        }
        try await Task.sleep(for: .milliseconds(20))
        for v: Int64 in [1, 2, 3] { try publisher.send(copyOf: v) }
        #expect(try await TestSupport.bounded(reader) == [1, 2, 3])

        let events = try node.event(TestSupport.uniqueName("async-ev"))
        let listener = try events.listener(), notifier = try events.notifier()
        let waiting = Task { try await listener.wait(timeout: .seconds(10)) }
        try await Task.sleep(for: .milliseconds(20))
        try notifier.notify(5)
        #expect(try await waiting.value == [5])

        let requests = try addService(node, TestSupport.uniqueName("async-rr"))
        let server = try requests.server(), client = try requests.client()
        let serving = Task { () -> Int64 in
            let active = try await server.receive(timeout: .seconds(10))
            try active.respond(AddResponse(sum: active.request.left + active.request.right, part: 0))
            return active.request.left
        }
        let answer = try await client.send(AddRequest(left: 20, right: 22)).next(timeout: .seconds(10))
        #expect(answer.value.sum == 42 && answer.isFinal)
        #expect(try await serving.value == 20)

        let cancelled = Task { _ = try await subscriber.receive(timeout: .seconds(30)) }
        cancelled.cancel()
        await #expect(throws: CancellationError.self) { _ = try await cancelled.value }
    }
}
