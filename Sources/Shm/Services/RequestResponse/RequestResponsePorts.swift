import Synchronization
import ShmSystem
@_spi(ShmInternals) import ShmPrimitives

/// A client's state and hot path, independent of the request and response
/// types (sizes are given). Two halves under one registration (slot in the
/// service's clients table, one port ID):
///
/// - `requests`, a sending half: the client's pool (`svc.<service>.p<id>`),
///   from which requests are loaned, written in place and delivered to one
///   server's inbox (round robin over servers with room);
/// - `responses`, a receiving half: the client's inbox (`svc.<service>.s<id>`,
///   one block per server slot), into which servers deliver responses that
///   live in their pools; the client reads them in place.
///
/// Nothing is copied on the way. See `RequestResponseWire` for what the
/// chunk headers carry.
@usableFromInline
package final class ClientPort: @unchecked Sendable {
    let attachment: ServiceAttachment
    let requests: PublisherPort
    let responses: SubscriberPort
    @usableFromInline package let portID: UInt64
    @usableFromInline package let requestSize: Int
    @usableFromInline package let responseSize: Int
    /// [the last request ID handed out]
    let local: UnsafeMutablePointer<UInt64>
    /// Responses that arrived for a request other than the one being waited
    /// for, copied out of the server's pool (its chunk goes back at once);
    /// bounded: the oldest requests' are dropped past `stashLimit`.
    @exclusivity(unchecked) var stash: [UInt64: [(bytes: [UInt8], final: Bool, serverID: UInt64)]] = [:]
    /// Responses in `stash`, all requests together.
    var stashed = 0
    static let stashLimit = 1024
    /// Requests sent while no server was connected, oldest first: still
    /// loaned chunks, delivered as soon as a server connects (checked on
    /// every send and every wait for a response). At most `queueDepth`.
    @exclusivity(unchecked) var backlog: [(chunk: Int, length: Int, id: UInt64)] = []
    let backlogLimit: Int

    /// A typed peer's error for a message shorter than its type (sent by a
    /// byte-sized peer of the same service).
    @usableFromInline
    func shortMessage(_ what: String, _ length: Int, _ size: Int) -> ServiceError {
        .corrupt(service: attachment.name.value, reason: "\(what) of \(length) bytes for a type of \(size)")
    }

    init(attachment: ServiceAttachment, sizes: RequestResponseSizes, waitStrategy: WaitStrategy) throws(ServiceError) {
        self.attachment = attachment
        requestSize = sizes.request.size
        responseSize = sizes.responseSize
        backlogLimit = sizes.queueDepth
        backlog.reserveCapacity(sizes.queueDepth)
        (requests, responses) = try PortHalves.open(attachment: attachment, table: .producers, sending: sizes.requests,
                                                     payload: sizes.request, receiving: sizes.responses, inboxBlocks: sizes.maxServers,
                                                     sizes: sizes, waitStrategy: waitStrategy)
        portID = requests.portID
        local = .allocate(capacity: 1)
        local.initialize(to: 0)
    }

    deinit {
        for request in backlog { returnRequestLoan(request.chunk) }
        local.deallocate()
    }

    // MARK: Requests

    /// Loans a request chunk from the client's pool; its payload is at
    /// `requestPayload(_:)` (room for `requestSize` bytes).
    /// - Throws: `.tooManyLoans`, `.poolExhausted` (servers hold every chunk).
    @usableFromInline
    package func loanRequest() throws(ServiceError) -> Int { try requests.takeChunk(bytes: requests.pool.maxCapacity) }

    @usableFromInline
    package func requestPayload(_ chunk: Int) -> UnsafeMutableRawPointer { requests.payload(chunk) }

    /// Gives an unsent loan back.
    @usableFromInline
    package func returnRequestLoan(_ chunk: Int) { _ = requests.returnLoan(chunk) }

    /// Sends the loaned request `chunk` (`length` ≤ `requestSize` bytes
    /// written) to one server; returns its ID. With no server connected the
    /// request waits in this client (up to `queueDepth` of them) and goes
    /// to the first server that connects.
    /// - Throws: `.noServer` if that backlog is full and no server connected
    ///   within `timeout`; `.timedOut` if every server's queue stayed full.
    @usableFromInline
    package func send(chunk: Int, length: Int, timeout: Duration?) throws(ServiceError) -> UInt64 {
        precondition(length >= 0 && length <= requestSize, "request of \(length) bytes, at most \(requestSize)")
        local.pointee &+= 1
        let id = local.pointee
        requests.sendTimeout = timeout
        let connected: Bool
        do throws(ServiceError) {
            if !backlog.isEmpty { try flushBacklog() }
            connected = backlog.isEmpty ? try requests.hasReceivers() : false
        } catch {
            returnRequestLoan(chunk)
            throw error
        }
        if connected {
            try deliver(chunk: chunk, length: length, id: id)
        } else if backlog.count < backlogLimit {
            backlog.append((chunk, length, id)) // in order, after those before it
        } else {
            // The backlog is full: wait (at most `timeout`) for a server.
            let end = deadline(after: timeout)
            while !backlog.isEmpty {
                if let end, monotonicNanoseconds() >= end {
                    returnRequestLoan(chunk)
                    throw .noServer(service: attachment.name.value, waited: timeout)
                }
                sleepNanoseconds(200_000) // waiting for a server to start: not a hot path
                do throws(ServiceError) { try flushBacklog() } catch {
                    returnRequestLoan(chunk)
                    throw error
                }
            }
            try deliver(chunk: chunk, length: length, id: id)
        }
        return id
    }

    private func deliver(chunk: Int, length: Int, id: UInt64) throws(ServiceError) {
        switch try requests.deliverToOne(chunk: chunk, bytes: length, sequence: RequestResponseWire.requestSequence(id)) {
        case .delivered: return
        case .noReceiver: throw .noServer(service: attachment.name.value, waited: requests.sendTimeout)
        case .timedOut: throw .timedOut(after: requests.sendTimeout)
        }
    }

    /// Delivers the backlog, oldest first, if a server is connected now;
    /// without `waiting`, only while some server's queue has room.
    func flushBacklog(waiting: Bool = true) throws(ServiceError) {
        while let first = backlog.first, try requests.hasReceivers(), waiting || requests.anyReceiverHasRoom() {
            backlog.removeFirst()
            try deliver(chunk: first.chunk, length: first.length, id: first.id)
        }
    }

    /// Copies `length` bytes at `payload` into a loaned request and sends it;
    /// returns its ID.
    @usableFromInline
    package func send(payload: UnsafeRawPointer, length: Int, timeout: Duration?) throws(ServiceError) -> UInt64 {
        precondition(length >= 0 && length <= requestSize, "request of \(length) bytes, at most \(requestSize)")
        let chunk = try loanRequest()
        requestPayload(chunk).copyMemory(from: payload, byteCount: length)
        return try send(chunk: chunk, length: length, timeout: timeout)
    }

    // MARK: Responses

    /// The next response to `requestID`, in place in its server's pool (or
    /// a heap copy if it had arrived while another request's was awaited).
    @usableFromInline
    package func receive(for requestID: UInt64, timeout: Duration?) throws(ServiceError) -> ResponseDelivery {
        if !stash.isEmpty, var queued = stash[requestID], !queued.isEmpty {
            let first = queued.removeFirst()
            stash[requestID] = queued.isEmpty ? nil : queued
            stashed -= 1
            return ResponseDelivery(copying: first.bytes, requestID: requestID, final: first.final, serverID: first.serverID)
        }
        var end: UInt64?? // computed only if we have to wait
        while true {
            // Never waits here: only what a connected server has room for.
            if !backlog.isEmpty { try flushBacklog(waiting: false) }
            guard let delivery = try responses.tryReceive() else {
                if end == nil { end = deadline(after: timeout) }
                // A server registering also ends the wait (the table's
                // version changes): the backlog goes out then.
                if !responses.waitForSample(until: end!) {
                    if let failure = responses.attachFailure { throw failure }
                    throw .timedOut(after: timeout)
                }
                continue
            }
            let (id, final) = RequestResponseWire.response(delivery.header.load(as: UInt64.self))
            if id == requestID { return ResponseDelivery(delivery, requestID: id, final: final) }
            if id != 0, id <= local.pointee { // an earlier request's: keep a copy; not ours at all: drop
                // Bounded in responses, not only requests: the oldest request's
                // oldest response goes first.
                while stashed >= ClientPort.stashLimit, let oldest = stash.keys.min() {
                    stash[oldest]!.removeFirst()
                    if stash[oldest]!.isEmpty { stash[oldest] = nil }
                    stashed -= 1
                }
                stash[id, default: []].append((Array(UnsafeRawBufferPointer(start: delivery.address, count: delivery.bytes)), final,
                                               delivery.connection._withUnsafeGuaranteedRef { $0.publisherID }))
                stashed += 1
            }
            delivery.giveBack()
        }
    }

    /// Waits for the next response to `requestID`, copies its payload to
    /// `payload` (room for `responseSize` bytes); returns whether it is the
    /// last one and its length (≤ `responseSize`).
    @usableFromInline
    package func next(for requestID: UInt64, into payload: UnsafeMutableRawPointer,
                      timeout: Duration?) throws(ServiceError) -> (final: Bool, length: Int) {
        let response = try receive(for: requestID, timeout: timeout)
        defer { response.release() }
        guard response.bytes <= responseSize else {
            throw .corrupt(service: attachment.name.value, reason: "response of \(response.bytes) bytes, at most \(responseSize)")
        }
        payload.copyMemory(from: response.address, byteCount: response.bytes)
        return (response.final, response.bytes)
    }

    /// True if a response may be waiting (async waits).
    func mayHaveResponse() -> Bool { !stash.isEmpty || responses.mayHaveSample() }
}

/// A response as the client holds it: in place in the server's pool (its
/// chunk goes back when released), or a heap copy from the stash.
@usableFromInline
package struct ResponseDelivery {
    @usableFromInline package let address: UnsafeRawPointer
    @usableFromInline package let bytes: Int
    @usableFromInline package let requestID: UInt64
    @usableFromInline package let final: Bool
    /// The server that sent it.
    @usableFromInline package let serverID: UInt64
    let delivery: SubscriberPort.Delivery?

    init(_ delivery: SubscriberPort.Delivery, requestID: UInt64, final: Bool) {
        address = delivery.address
        bytes = delivery.bytes
        self.requestID = requestID
        self.final = final
        serverID = delivery.connection._withUnsafeGuaranteedRef { $0.publisherID }
        self.delivery = delivery
    }

    init(copying stashed: [UInt8], requestID: UInt64, final: Bool, serverID: UInt64) {
        let copy = UnsafeMutableRawPointer.allocate(byteCount: max(1, stashed.count), alignment: 16)
        stashed.withUnsafeBytes { if $0.count > 0 { copy.copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
        address = UnsafeRawPointer(copy)
        bytes = stashed.count
        self.requestID = requestID
        self.final = final
        self.serverID = serverID
        delivery = nil
    }

    /// Hands the chunk back to its server (or frees the copy).
    @usableFromInline
    package func release() {
        if let delivery { delivery.giveBack() } else { UnsafeMutableRawPointer(mutating: address).deallocate() }
    }
}

/// A server's state and hot path, independent of the request and response
/// types. Two halves under one registration (slot in the servers table):
///
/// - `requests`, a receiving half: the server's inbox (one block per client
///   slot), into which clients deliver requests that live in their pools;
///   the server reads them in place;
/// - `responses`, a sending half: the server's pool, from which responses
///   are loaned, written in place and delivered to the asking client only.
///
/// Receiving is for one thread at a time; responding may happen from
/// several threads at once (`ActiveRequest` is `Sendable`): the sending
/// half is behind `respondLock` (uncontended: one lock/unlock per response).
@usableFromInline
package final class ServerPort: @unchecked Sendable {
    let attachment: ServiceAttachment
    let requests: SubscriberPort
    let responses: PublisherPort
    let respondLock = Mutex(())
    @usableFromInline package let portID: UInt64
    @usableFromInline package let requestSize: Int
    @usableFromInline package let responseSize: Int

    var strategy: WaitStrategy { requests.waiter.strategy }

    @usableFromInline
    func shortMessage(_ what: String, _ length: Int, _ size: Int) -> ServiceError {
        .corrupt(service: attachment.name.value, reason: "\(what) of \(length) bytes for a type of \(size)")
    }

    init(attachment: ServiceAttachment, sizes: RequestResponseSizes, waitStrategy: WaitStrategy) throws(ServiceError) {
        self.attachment = attachment
        requestSize = sizes.request.size
        responseSize = sizes.responseSize
        (responses, requests) = try PortHalves.open(attachment: attachment, table: .consumers, sending: sizes.responses,
                                                     payload: PayloadType(name: "", size: sizes.responseSize, alignment: 16),
                                                     receiving: sizes.requests, inboxBlocks: sizes.maxClients,
                                                     sizes: sizes, waitStrategy: waitStrategy)
        portID = responses.portID
    }

    // MARK: Requests

    /// The next request in place in its client's pool, or nil if none is waiting.
    @usableFromInline
    package func tryReceive() throws(ServiceError) -> RequestDelivery? {
        guard let delivery = try requests.tryReceive() else { return nil }
        return RequestDelivery(delivery)
    }

    /// Waits for the next request with the wait strategy, at most `timeout`.
    @usableFromInline
    package func receive(timeout: Duration?) throws(ServiceError) -> RequestDelivery {
        RequestDelivery(try requests.receive(until: deadline(after: timeout), timeout: timeout))
    }

    /// Takes the next request, copies its payload to `payload` (room for
    /// `requestSize` bytes) and hands its chunk back; returns its client and
    /// request IDs and its length (≤ `requestSize`), or nil on timeout when
    /// `throwOnTimeout` is false.
    @usableFromInline
    package func receive(into payload: UnsafeMutableRawPointer, timeout: Duration?,
                         throwOnTimeout: Bool) throws(ServiceError) -> (clientID: UInt64, requestID: UInt64, length: Int)? {
        let request: RequestDelivery
        if timeout == .zero {
            guard let got = try tryReceive() else {
                if throwOnTimeout { throw .timedOut(after: timeout) }
                return nil
            }
            request = got
        } else {
            do throws(ServiceError) { request = try receive(timeout: timeout) }
            catch {
                if case .timedOut = error, !throwOnTimeout { return nil }
                throw error
            }
        }
        defer { request.release() }
        guard request.bytes <= requestSize else {
            throw .corrupt(service: attachment.name.value, reason: "request of \(request.bytes) bytes, at most \(requestSize)")
        }
        payload.copyMemory(from: request.address, byteCount: request.bytes)
        return (request.clientID, request.requestID, request.bytes)
    }

    // MARK: Responses

    /// Loans a response chunk from the server's pool; its payload is at
    /// `responsePayload(_:)` (room for `responseSize` bytes). Any thread.
    /// - Throws: `.tooManyLoans`, `.poolExhausted` (clients hold every chunk).
    @usableFromInline
    package func loanResponse() throws(ServiceError) -> Int {
        try respondLock.withLock { _ throws(ServiceError) -> Int in try responses.takeChunk(bytes: responses.pool.maxCapacity) }
    }

    @usableFromInline
    package func responsePayload(_ chunk: Int) -> UnsafeMutableRawPointer { responses.payload(chunk) }

    /// Gives an unsent response loan back. Any thread.
    @usableFromInline
    package func returnResponseLoan(_ chunk: Int) {
        respondLock.withLock { _ in _ = responses.returnLoan(chunk) }
    }

    /// Sends the loaned response `chunk` (`length` ≤ `responseSize` bytes
    /// written) to `clientID`, waiting at most `timeout` for room in its
    /// queue. Returns false if that client is gone. Any thread.
    /// - Throws: `.timedOut` if the client, alive, did not make room.
    @usableFromInline
    package func send(chunk: Int, length: Int, final: Bool, requestID: UInt64, clientID: UInt64,
                      timeout: Duration?) throws(ServiceError) -> Bool {
        precondition(length >= 0 && length <= responseSize, "response of \(length) bytes, at most \(responseSize)")
        var end: UInt64?? // computed only if we have to wait
        while true {
            // Under the lock: deliver if the client's queue has room (only this
            // server pushes there, and only under this lock: the room stays).
            enum Attempt { case delivered, gone, full(DeliveryLink), refused(PublisherPort.SingleDelivery) }
            let attempt = try respondLock.withLock { _ throws(ServiceError) -> Attempt in
                switch try responses.room(for: clientID) {
                case .noReceiver: return .gone
                case .full(let link): return .full(link)
                case .room:
                    responses.sendTimeout = timeout
                    let outcome = try responses.deliver(chunk: chunk, bytes: length,
                                                        sequence: RequestResponseWire.responseSequence(requestID, final: final),
                                                        to: clientID)
                    if case .delivered = outcome { return .delivered }
                    return .refused(outcome) // (the chunk went back to the pool)
                }
            }
            switch attempt {
            case .delivered: return true
            case .refused(let outcome):
                if case .timedOut = outcome { throw .timedOut(after: timeout) }
                return false
            case .gone:
                returnResponseLoan(chunk)
                return false
            case .full(let link):
                // Wait for room outside the lock: other responders go on.
                if end == nil { end = deadline(after: timeout) }
                if !waitForRoom(link, clientID: clientID, until: end!) {
                    returnResponseLoan(chunk)
                    if responses.receiverIsRegistered(clientID) { throw .timedOut(after: timeout) }
                    return false
                }
            }
        }
    }

    /// Waits until client `clientID`'s queue (`link`) has room, the
    /// deadline passes, or the client is gone (checked every 10 ms).
    private func waitForRoom(_ link: DeliveryLink, clientID: UInt64, until end: UInt64?) -> Bool {
        let state = link.state
        // A sleeping client has work: make sure it is awake.
        if state.mayPark { state.parker.wakeIfSleeping() }
        var waiter = Waiter(strategy)
        return waiter.wait(on: state.spaceParker, deadline: end, slice: 10_000_000, ready: { state.writer.hasRoom() },
                           keepWaiting: { self.responses.receiverIsRegistered(clientID) })
    }

    /// Copies `length` bytes at `payload` into a loaned response and sends
    /// it to `clientID`; false if that client is gone. Any thread.
    @usableFromInline
    package func respond(payload: UnsafeRawPointer, length: Int, final: Bool, requestID: UInt64, clientID: UInt64,
                         timeout: Duration?) throws(ServiceError) -> Bool {
        precondition(length >= 0 && length <= responseSize, "response of \(length) bytes, at most \(responseSize)")
        let chunk = try loanResponse()
        responsePayload(chunk).copyMemory(from: payload, byteCount: length)
        return try send(chunk: chunk, length: length, final: final, requestID: requestID, clientID: clientID, timeout: timeout)
    }
}

/// A request as the server holds it: in place in its client's pool; the
/// chunk goes back to the client when released.
@usableFromInline
package struct RequestDelivery {
    @usableFromInline package let address: UnsafeRawPointer
    @usableFromInline package let bytes: Int
    @usableFromInline package let clientID: UInt64
    @usableFromInline package let requestID: UInt64
    let delivery: SubscriberPort.Delivery

    init(_ delivery: SubscriberPort.Delivery) {
        address = delivery.address
        bytes = delivery.bytes
        clientID = delivery.connection._withUnsafeGuaranteedRef { $0.publisherID }
        requestID = RequestResponseWire.requestID(delivery.header.load(as: UInt64.self))
        self.delivery = delivery
    }

    /// Hands the chunk back to the client. On the receiving thread.
    @usableFromInline
    package func release() { delivery.giveBack() }
}

extension SubscriberPort.Delivery {
    /// Hands the chunk back to its sender (a received sample, request or
    /// response being dropped).
    func giveBack() {
        let reference = self.reference
        let released = connection._withUnsafeGuaranteedRef { $0.giveBack(reference) }
        if released.connection { connection.release() }
        released.port?.release()
    }
}
