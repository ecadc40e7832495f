#if canImport(Glibc)
import Glibc
#endif
import Testing
import ShmTestSupport
@testable import Shm

/// Request/response without copies: requests live in the client's pool and
/// responses in the server's, each read in place by the other side, handed
/// back when dropped — also when the holder is killed.
@Suite("Zero-copy request/response")
struct ZeroCopyRequestResponseTests {
    /// What the receiver reads is the sender's memory: a write through the
    /// sender's mapping after the send shows through the receiver's.
    @Test func requestsAndResponsesAreReadInPlace() throws {
        let node = try Node(name: "unit")
        let service = try addService(node, TestSupport.uniqueName("zc"))
        let client = try service.client(), server = try service.server()
        let loan = try client.loanUninitialized().write(AddRequest(left: 1, right: 2))
        let requestChunk = loan.chunk
        let pending = try loan.send()
        let request = try server.receiveInPlace(timeout: .seconds(1))
        #expect(request.payload == AddRequest(left: 1, right: 2))
        #expect(request.clientID == client.portID && request.requestID == pending.requestID)
        client.port.requestPayload(requestChunk).storeBytes(of: AddRequest(left: 40, right: 2), as: AddRequest.self)
        #expect(request.payload == AddRequest(left: 40, right: 2), "the server read a copy")

        let answer = try request.loanResponse().write(AddResponse(sum: 42, part: 0))
        let responseChunk = answer.chunk
        #expect(try answer.send())
        let response = try pending.receive(timeout: .seconds(1))
        #expect(response.payload == AddResponse(sum: 42, part: 0) && response.isFinal)
        #expect(response.requestID == pending.requestID && response.serverID == server.portID)
        server.port.responsePayload(responseChunk).storeBytes(of: AddResponse(sum: 7, part: 7), as: AddResponse.self)
        #expect(response.payload == AddResponse(sum: 7, part: 7), "the client read a copy")
        _ = consume request
        _ = consume response
        // Both chunks went back to their pools.
        client.port.requests.reclaimReturns()
        server.port.responses.reclaimReturns()
        #expect(client.port.requests.local.pointee.freeCount == client.port.requests.chunkCount)
        #expect(server.port.responses.local.pointee.freeCount == server.port.responses.chunkCount)
    }

    @Test func aStreamOfResponsesInPlace() throws {
        let node = try Node(name: "unit")
        let service = try addService(node, TestSupport.uniqueName("zcstream"))
        let client = try service.client(), server = try service.server()
        let first = try client.send(AddRequest(left: 1, right: 1))
        let second = try client.send(AddRequest(left: 2, right: 2))
        let one = try server.receiveInPlace(timeout: .seconds(1)), two = try server.receiveInPlace(timeout: .seconds(1))
        // Answered out of order and interleaved: each reaches its own request.
        for part in 0..<3 {
            #expect(try two.respond(AddResponse(sum: 4, part: Int64(part)), final: part == 2))
            #expect(try one.respond(AddResponse(sum: 2, part: Int64(part)), final: part == 2))
        }
        for (pending, sum) in [(first, Int64(2)), (second, 4)] {
            for part in 0..<3 {
                let response = try pending.receive(timeout: .seconds(1))
                #expect(response.payload == AddResponse(sum: sum, part: Int64(part)))
                #expect(response.isFinal == (part == 2) && response.requestID == pending.requestID)
            }
        }
        #expect(throws: ServiceError.timedOut(.milliseconds(20))) { _ = try first.receive(timeout: .milliseconds(20)) }
    }

    /// Requests go round robin to the servers with room; each is answered
    /// once, by the server that took it.
    @Test func requestsAreSpreadOverTheServers() throws {
        let node = try Node(name: "unit")
        let service = try addService(node, TestSupport.uniqueName("zcspread"))
        let client = try service.client(), a = try service.server(), b = try service.server()
        let pending = try (0..<8).map { i in try client.send(AddRequest(left: Int64(i), right: 100)) }
        var taken: [UInt64: Int] = [:]
        for server in [a, b] {
            while let request = try server.tryReceiveInPlace() {
                taken[server.portID, default: 0] += 1
                #expect(try request.respond(AddResponse(sum: request.payload.left + request.payload.right, part: Int64(server.portID & 0xffff))))
            }
        }
        #expect(taken[a.portID] == 4 && taken[b.portID] == 4, "\(taken)")
        for (i, p) in pending.enumerated() {
            let response = try p.receive(timeout: .seconds(1))
            #expect(response.payload.sum == Int64(i) + 100)
            #expect(response.payload.part == Int64(response.serverID & 0xffff))
        }
    }

    /// With no server yet a request waits in its client (at most
    /// `queueDepth` of them) and goes to the first server that connects when
    /// the client next sends or waits; past that, a clear error.
    @Test func requestsSentBeforeAnyServerWaitInTheClient() throws {
        let node = try Node(name: "unit")
        let service = try node.requestResponse(TestSupport.uniqueName("zcearly"), request: AddRequest.self, response: AddResponse.self,
                                               config: .init(maxClients: 2, maxServers: 1, queueDepth: 2))
        let client = try service.client()
        let early = try (0..<2).map { i in try client.send(AddRequest(left: Int64(i), right: 0)) }
        #expect { _ = try client.send(AddRequest(left: 9, right: 9), timeout: .milliseconds(50)) } throws: { error in
            guard case ServiceError.noServer(_, let waited) = error else { return false }
            return waited == .milliseconds(50) && "\(error)".contains("no server")
        }
        let server = try service.server()
        #expect(throws: ServiceError.timedOut(.zero)) { _ = try early[0].receive(timeout: .zero) } // hands the backlog over
        for (i, pending) in early.enumerated() {
            let request = try server.receiveInPlace(timeout: .seconds(1))
            #expect(request.payload.left == Int64(i) && request.requestID == pending.requestID)
            #expect(try request.respond(AddResponse(sum: Int64(i), part: 0)))
        }
        #expect(try server.tryReceive() == nil, "the refused request was sent anyway")
        for (i, pending) in early.enumerated() { #expect(try pending.response().sum == Int64(i)) }
        // The refused request's chunk went back: every chunk is free again.
        client.port.requests.reclaimReturns()
        #expect(client.port.requests.local.pointee.freeCount == client.port.requests.chunkCount)
    }

    /// A server that holds requests in place may hold `queueDepth` of them;
    /// then it is told so, and the client's pool is never overrun.
    @Test func holdingTooManyRequestsIsAClearError() throws {
        let node = try Node(name: "unit")
        let service = try node.requestResponse(TestSupport.uniqueName("zchold"), request: AddRequest.self, response: AddResponse.self,
                                               config: .init(maxClients: 1, maxServers: 1, queueDepth: 2))
        let client = try service.client(), server = try service.server()
        for i in 0..<2 { _ = try client.send(AddRequest(left: Int64(i), right: 0)) }
        let first = try server.receiveInPlace(timeout: .seconds(1)), second = try server.receiveInPlace(timeout: .seconds(1))
        _ = try client.send(AddRequest(left: 2, right: 0))
        #expect(throws: ServiceError.tooManyBorrowed(maximum: 2)) { _ = try server.receiveInPlace(timeout: .seconds(1)) }
        _ = consume first
        #expect(try server.receiveInPlace(timeout: .seconds(1)).payload.left == 2)
        withExtendedLifetime(second) {}
    }

    /// A loan refused (too many loans) leaves no reference behind: the
    /// client goes when its last user does.
    @Test func aRefusedLoanDoesNotKeepTheClientAlive() throws {
        let node = try Node(name: "unit")
        let service = try node.requestResponse(TestSupport.uniqueName("zcloan"), request: AddRequest.self, response: AddResponse.self,
                                               config: .init(maxClients: 1, maxServers: 1, queueDepth: 1))
        weak var gone: Client<AddRequest, AddResponse>?
        do {
            let client = try service.client()
            gone = client
            // queueDepth + 4 loans at once.
            let a = try client.loanUninitialized(), b = try client.loanUninitialized(), c = try client.loanUninitialized()
            let d = try client.loanUninitialized(), e = try client.loanUninitialized()
            for _ in 0..<3 {
                #expect(throws: ServiceError.tooManyLoans(maximum: 5)) { _ = try client.loanUninitialized() }
            }
            _ = consume a; _ = consume b; _ = consume c; _ = consume d; _ = consume e
        }
        #expect(gone == nil, "a refused loan kept the client alive")
        // And its slot is free again.
        _ = try service.client()
    }

    /// Sends that fail (no server: the backlog full), responses sent, and
    /// responses to a client that left (`send` returns false) release the
    /// client and the server they borrowed: nothing keeps either alive.
    @Test func failedSendsKeepNothingAlive() throws {
        let node = try Node(name: "unit")
        let service = try node.requestResponse(TestSupport.uniqueName("zcfail"), request: AddRequest.self, response: AddResponse.self,
                                               config: .init(maxClients: 1, maxServers: 1, queueDepth: 1))
        weak var goneClient: Client<AddRequest, AddResponse>?
        do {
            let client = try service.client()
            goneClient = client
            _ = try client.loanUninitialized().write(AddRequest(left: 1, right: 1)).send(timeout: .milliseconds(10)) // waits in the client
            #expect(throws: ServiceError.self) {
                _ = try client.loanUninitialized().write(AddRequest(left: 2, right: 2)).send(timeout: .milliseconds(10))
            }
        }
        #expect(goneClient == nil, "a failed send kept the client alive")
        weak var goneServer: Server<AddRequest, AddResponse>?
        do {
            let server = try service.server()
            goneServer = server
            let client = try service.client()
            let pending = try client.loanUninitialized().write(AddRequest(left: 3, right: 4)).send()
            let request = try server.receiveInPlace(timeout: .seconds(1))
            #expect(try request.loanResponse().write(AddResponse(sum: 7, part: 0)).send())
            #expect(try pending.receive(timeout: .seconds(1)).payload.sum == 7)
        }
        #expect(goneServer == nil, "a sent response kept the server alive")
        // A response to a client that left: `send` says false, and the server goes.
        do {
            let server = try service.server()
            goneServer = server
            var client: Client<AddRequest, AddResponse>? = try service.client()
            var pending: PendingResponse<AddRequest, AddResponse>? = try client!.loanUninitialized().write(AddRequest(left: 5, right: 6)).send()
            let request = try server.receiveInPlace(timeout: .seconds(1))
            pending = nil
            client = nil
            #expect(try request.loanResponse().write(AddResponse(sum: 11, part: 0)).send(timeout: .milliseconds(100)) == false)
            _ = (pending, client)
        }
        #expect(goneServer == nil, "a response to a gone client kept the server alive")
    }

    /// Responses to other requests are stashed (copied) while one is
    /// awaited — bounded in responses, not only in requests.
    @Test func theStashIsBoundedInResponses() throws {
        let node = try Node(name: "unit")
        let service = try addService(node, TestSupport.uniqueName("zcstash"))
        let client = try service.client(), server = try service.server()
        let stream = try client.send(AddRequest(left: 1, right: 0)), single = try client.send(AddRequest(left: 2, right: 0))
        let one = try server.receive(timeout: .seconds(1)), two = try server.receive(timeout: .seconds(1))
        let responder = TestThread {
            // 1,500 parts of a stream nobody reads yet, then the answer awaited.
            for part in 0..<1_500 { _ = try? one.respond(AddResponse(sum: 1, part: Int64(part)), final: part == 1_499, timeout: .seconds(10)) }
            _ = try? two.respond(AddResponse(sum: 2, part: 0), timeout: .seconds(10))
        }
        #expect(try single.response(timeout: .seconds(30)).sum == 2)
        responder.join()
        #expect(client.port.stashed == ClientPort.stashLimit && client.port.stash[stream.requestID]?.count == ClientPort.stashLimit)
        // The oldest went first: the stream resumes at part 476.
        #expect(try stream.response(timeout: .seconds(1)).part == Int64(1_500 - ClientPort.stashLimit))
    }

    /// One client that does not read does not hold up the server's answers
    /// to the others: a response waits for room outside the server's lock.
    @Test func aClientThatDoesNotReadDoesNotStallOtherResponses() throws {
        let node = try Node(name: "unit")
        let service = try node.requestResponse(TestSupport.uniqueName("zcstall"), request: AddRequest.self, response: AddResponse.self,
                                               config: .init(maxClients: 2, maxServers: 1, queueDepth: 2))
        let slow = try service.client(), fast = try service.client(), server = try service.server()
        _ = try slow.send(AddRequest(left: 1, right: 0))
        let fastPending = try fast.send(AddRequest(left: 2, right: 0))
        let a = try server.receive(timeout: .seconds(1)), b = try server.receive(timeout: .seconds(1))
        let (toSlow, toFast) = a.clientID == slow.portID ? (a, b) : (b, a)
        for part in 0..<2 { #expect(try toSlow.respond(AddResponse(sum: 1, part: Int64(part)), final: false)) } // slow's queue is full now
        let outcome = Locked<(error: ServiceError?, waited: UInt64)>((nil, 0))
        let blocked = TestThread {
            let start = monotonicNanoseconds()
            var error: ServiceError?, outcomeError: ServiceError?
            do throws(ServiceError) { _ = try toSlow.respond(AddResponse(sum: 1, part: 2), timeout: .seconds(2)) } catch { outcomeError = error }
            error = outcomeError
            outcome.set((error, monotonicNanoseconds() - start))
        }
        usleep(100_000) // the blocked responder is waiting for room now
        let start = monotonicNanoseconds()
        #expect(try toFast.respond(AddResponse(sum: 2, part: 0), timeout: .seconds(5)))
        #expect(monotonicNanoseconds() - start < 1_000_000_000, "the answer to the other client waited for the slow one")
        #expect(try fastPending.response(timeout: .seconds(1)).sum == 2)
        blocked.join()
        #expect(outcome.value.error == .timedOut(.seconds(2)) && outcome.value.waited >= 1_900_000_000, "\(outcome.value)")
        withExtendedLifetime(slow) {}
    }

    /// A server killed while it holds requests in place: once it is
    /// reclaimed, its client gets every chunk back and goes on with another
    /// server.
    @Test func aServerKilledHoldingRequestsGivesTheirChunksBack() throws {
        try TestSupport.aroundDeadPeers {
            let name = TestSupport.uniqueName("zcdeadsrv")
            let node = try Node(name: "test")
            let service = try addService(node, name)
            let client = try service.client()
            let doomed = try TestSupport.spawnPeer(["rr-serve-hold", name, "10"])
            #expect(try doomed.readLine(timeout: .seconds(20)) == "serving")
            let lost = try (0..<10).map { i in try client.send(AddRequest(left: Int64(i), right: 0)) }
            #expect(try doomed.readLine(timeout: .seconds(20)) == "holding 10")
            // All ten are held: none came back to the pool.
            client.port.requests.reclaimReturns()
            #expect(client.port.requests.chunkCount - client.port.requests.local.pointee.freeCount == 10)
            doomed.kill(SIGKILL)
            _ = try doomed.wait(timeout: .seconds(10))
            #expect(throws: ServiceError.self) { _ = try lost[0].receive(timeout: .milliseconds(50)) }
            #expect(service.attachment.reclaimDeadPorts() >= 1)
            let replacement = try TestSupport.spawnPeer(["rr-serve", name, "300", "1"])
            #expect(try replacement.readLine(timeout: .seconds(20)) == "serving")
            for i in 0..<300 { #expect(try client.send(AddRequest(left: Int64(i), right: 1)).response(timeout: .seconds(10)).sum == Int64(i) + 1) }
            try expectSuccess(replacement)
            client.port.requests.reclaimReturns()
            let requests = client.port.requests
            #expect(requests.local.pointee.freeCount == requests.chunkCount, "\(requests.chunkCount - requests.local.pointee.freeCount) chunks lost")
            // The dead server's pool and inbox are gone (the replacement removed its own as it left).
            let left = SegmentDirectory.list().map(\.name.name).filter { $0.hasPrefix("svc.\(name).") }
            let mine = ["p", "s"].map { "svc.\(name).\($0)\(String(client.portID, radix: 16))" }
            #expect(left.sorted() == mine.sorted(), "\(left)")
        }
    }

    /// A client killed while it holds responses in place: once it is
    /// reclaimed, the server gets every chunk back and serves others.
    @Test func aClientKilledHoldingResponsesGivesTheirChunksBack() throws {
        try TestSupport.aroundDeadPeers {
            let name = TestSupport.uniqueName("zcdeadcl")
            let node = try Node(name: "test")
            let service = try addService(node, name)
            let server = try service.server()
            let doomed = try TestSupport.spawnPeer(["rr-client-hold", name, "5"])
            for _ in 0..<5 {
                let request = try server.receiveInPlace(timeout: .seconds(20))
                #expect(try request.respond(AddResponse(sum: request.payload.left + request.payload.right, part: 0)))
            }
            #expect(try doomed.readLine(timeout: .seconds(20)) == "holding 5")
            let responses = server.port.responses
            responses.reclaimReturns()
            #expect(responses.chunkCount - responses.local.pointee.freeCount == 5, "the dead client's held responses")
            doomed.kill(SIGKILL)
            _ = try doomed.wait(timeout: .seconds(10))
            #expect(service.attachment.reclaimDeadPorts() >= 1)
            let other = try TestSupport.spawnPeer(["rr-client", name, "200"])
            for _ in 0..<200 {
                let request = try server.receiveInPlace(timeout: .seconds(20))
                #expect(try request.respond(AddResponse(sum: request.payload.left + request.payload.right, part: 0)))
            }
            try expectSuccess(other, "client")
            responses.reclaimReturns()
            #expect(responses.local.pointee.freeCount == responses.chunkCount, "\(responses.chunkCount - responses.local.pointee.freeCount) chunks lost")
        }
    }
}
