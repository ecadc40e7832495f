#if canImport(Glibc)
import Glibc
#endif
import Testing
import ShmTestSupport
@testable import Shm

/// The byte-sized form of request/response that the C ABI and Python use,
/// against typed Swift peers of the same service, and wait-set descriptors.
@Suite("Byte-sized request/response and readiness descriptors")
struct RawRequestResponseTests {
    static let add = PayloadType(name: "swiftshm.tests.Add", size: 16, alignment: 8)

    @Test func byteMessagesCarryTheirLengthAndTypedPeersRefuseShortOnes() throws {
        let node = try Node(name: "unit")
        let name = TestSupport.uniqueName("rrraw")
        let typed = try addService(node, name)
        let raw = try RawRequestResponseService(node: node, name: ServiceName(name), request: Self.add, responseSize: 16,
                                                config: .init(maxClients: 8, maxServers: 2, queueDepth: 16), mode: .open)
        #expect(raw.requestSize == 16 && raw.responseSize == 16)
        // One server at a time: requests are spread over the servers there are.
        let rawClient = try raw.clientPort(waitStrategy: .default), typedClient = try typed.client()
        var typedServer: Server<AddRequest, AddResponse>? = try typed.server()

        // A full-size raw request is a typed request.
        do {
            var request = AddRequest(left: 5, right: 6)
            let id = try rawClient.send(payload: &request, length: 16, timeout: .seconds(1))
            let active = try typedServer!.receive(timeout: .seconds(1))
            #expect(active.request.left == 5 && active.requestID == id)
            try active.respond(AddResponse(sum: 11, part: 0))
            var response = AddResponse(sum: 0, part: 0)
            let (final, length) = try rawClient.next(for: id, into: &response, timeout: .seconds(1))
            #expect(final && length == 16 && response.sum == 11)
        }

        // A short raw request reaches a typed server as a named error, not as a value.
        var short: Int64 = 7
        _ = try rawClient.send(payload: &short, length: 8, timeout: .seconds(1))
        #expect { _ = try typedServer!.receive(timeout: .seconds(1)) } throws: { error in
            guard case ServiceError.corrupt(_, let reason) = error else { return false }
            return reason.contains("request of 8 bytes")
        }
        typedServer = nil
        let rawServer = try raw.serverPort(waitStrategy: .default)

        // A short raw response reaches a typed client as a named error.
        let pending = try typedClient.send(AddRequest(left: 1, right: 1))
        var buffer = [UInt8](repeating: 0, count: 16)
        let got = try buffer.withUnsafeMutableBytes { try rawServer.receive(into: $0.baseAddress!, timeout: .seconds(1), throwOnTimeout: true) }
        #expect(got?.length == 16 && got?.requestID == pending.requestID)
        var three: UInt32 = 3
        #expect(try rawServer.respond(payload: &three, length: 4, final: true, requestID: got!.requestID, clientID: got!.clientID,
                                      timeout: .seconds(1)))
        #expect { _ = try pending.response(timeout: .seconds(1)) } throws: { error in
            guard case ServiceError.corrupt(_, let reason) = error else { return false }
            return reason.contains("response of 4 bytes")
        }
    }

    @Test func lengthsFromZeroToTheMaximumRoundTrip() throws {
        let node = try Node(name: "unit")
        let raw = try RawRequestResponseService(node: node, name: ServiceName(TestSupport.uniqueName("rrlen")),
                                                request: PayloadType(name: "bytes -> bytes", size: 300, alignment: 1),
                                                responseSize: 100, config: .init(), mode: .create)
        let client = try raw.clientPort(waitStrategy: .default), server = try raw.serverPort(waitStrategy: .default)
        var inbox = [UInt8](repeating: 0xEE, count: 300), outbox = [UInt8](repeating: 0xEE, count: 100)
        for size in [0, 1, 99, 100, 299, 300] {
            let message = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ size) }
            let id = try message.withUnsafeBytes { try client.send(payload: $0.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!, length: size,
                                                                   timeout: .seconds(1)) }
            let got = try inbox.withUnsafeMutableBytes { try server.receive(into: $0.baseAddress!, timeout: .seconds(1), throwOnTimeout: true) }!
            #expect(got.length == size && got.requestID == id && Array(inbox.prefix(size)) == message)
            let answer = Array(message.suffix(min(size, 100)))
            #expect(try answer.withUnsafeBytes {
                try server.respond(payload: $0.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!, length: answer.count, final: true,
                                   requestID: got.requestID, clientID: got.clientID, timeout: .seconds(1))
            })
            let (final, length) = try outbox.withUnsafeMutableBytes { try client.next(for: id, into: $0.baseAddress!, timeout: .seconds(1)) }
            #expect(final && length == answer.count && Array(outbox.prefix(length)) == answer)
        }
    }

    /// Hostile length fields: a request whose reference claims more bytes
    /// than its client's chunks hold is refused by name (the chunk goes back
    /// to the client), and the server keeps serving.
    @Test func aLengthFieldBeyondTheChunkIsCorruptNotAnOverread() throws {
        let node = try Node(name: "unit")
        let raw = try RawRequestResponseService(node: node, name: ServiceName(TestSupport.uniqueName("rrhostile")),
                                                request: PayloadType(name: "bytes -> bytes", size: 32, alignment: 1),
                                                responseSize: 32, config: .init(), mode: .create)
        let server = try raw.serverPort(waitStrategy: .default)
        let client = try raw.clientPort(waitStrategy: .default)
        // Deliver a chunk by hand whose reference says 1 MiB (the typed and
        // byte-sized sends refuse such a length before it leaves).
        let chunk = try client.loanRequest()
        guard case .delivered = try client.requests.deliverToOne(chunk: chunk, bytes: 1 << 20, sequence: 1) else {
            Issue.record("not delivered")
            return
        }
        var inbox = [UInt8](repeating: 0, count: 32)
        #expect { _ = try inbox.withUnsafeMutableBytes { try server.receive(into: $0.baseAddress!, timeout: .seconds(1), throwOnTimeout: true) } }
            throws: { error in
                guard case ServiceError.corrupt(_, let reason) = error else { return false }
                return reason.contains("1048576 bytes")
            }
        #expect(try inbox.withUnsafeMutableBytes { try server.receive(into: $0.baseAddress!, timeout: .zero, throwOnTimeout: false) } == nil)
        // Served as before; the bad request's chunk came back to the client's pool.
        let id = try [UInt8](repeating: 7, count: 32).withUnsafeBytes { try client.send(payload: $0.baseAddress!, length: 32, timeout: .seconds(1)) }
        let got = try #require(try inbox.withUnsafeMutableBytes { try server.receive(into: $0.baseAddress!, timeout: .seconds(1), throwOnTimeout: true) })
        #expect(got.requestID == id && got.clientID == client.portID && inbox == [UInt8](repeating: 7, count: 32))
        client.requests.reclaimReturns()
        #expect(client.requests.local.pointee.freeCount == client.requests.chunkCount)
    }

    /// The wait set's descriptor becomes readable for each kind of
    /// attachment, stays quiet after a drain and rearm, and takes in
    /// attachments added after it was made.
    @Test func aWaitSetDescriptorSignalsEachKindOfAttachment() throws {
        let node = try Node(name: "unit")
        let base = TestSupport.uniqueName("wsfd")
        let pubsub = try node.publishSubscribe(base + ".f", slicesOf: UInt8.self, maxLength: 8)
        let subscriber = try pubsub.subscriber(), publisher = try pubsub.publisher()
        let events = try node.event(base + ".e", config: .init(maxEventID: 3))
        let listener = try events.listener(), notifier = try events.notifier()
        let rr = try addService(node, base + ".r")
        let server = try rr.server(), client = try rr.client()

        let waitSet = WaitSet()
        let frames = waitSet.attach(subscriber)
        let readiness = try waitSet.makeReadiness()
        func readable(_ milliseconds: Int32) -> Bool {
            var entry = pollfd(fd: readiness.fileDescriptor, events: Int16(POLLIN), revents: 0)
            return poll(&entry, 1, milliseconds) == 1
        }
        #expect(!readable(50))

        _ = try publisher.send(copyOf: [UInt8(1), 2, 3])
        #expect(readable(5000))
        #expect(try waitSet.wait(timeout: .zero) == [frames])
        while try subscriber.tryReceive() != nil {}
        readiness.rearm()
        #expect(!readable(50))

        // Attached after the descriptor was made: taken in by rearm.
        let alarms = waitSet.attach(listener), requests = waitSet.attach(server)
        readiness.rearm()
        try notifier.notify(EventID(2))
        #expect(readable(5000))
        #expect(try waitSet.wait(timeout: .zero) == [alarms])
        #expect(listener.tryWait() == [EventID(2)])
        readiness.rearm()
        #expect(!readable(50))

        let pending = try client.send(AddRequest(left: 2, right: 3))
        #expect(readable(5000))
        #expect(try waitSet.wait(timeout: .zero) == [requests])
        try server.receive(timeout: .seconds(1)).respond(AddResponse(sum: 5, part: 0))
        readiness.rearm()
        #expect(!readable(50))
        #expect(try pending.response().sum == 5)
    }
}
