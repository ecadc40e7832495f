import ShmSystem
@_spi(ShmInternals) import ShmPrimitives

// Requests and responses in shared memory, as publish/subscribe's samples
// are: loaned in the sender's pool, written in place, read in place by the
// receiver, handed back when dropped. Uninitialized loans cannot be sent:
// `write` or `assumeInitialized` turns them into sendable ones.
//
// A loan keeps its client or server alive with one reference it passes on
// (`Unmanaged`, retained once when the loan is made): from uninitialized to
// written to sent (into `PendingResponse`) costs no further reference
// counting, where three strong copies would cost three retain/release pairs.

/// A request loaned from a client's pool, not written yet. Dropping it
/// gives the chunk back.
public struct UninitializedRequest<Request: BitwiseCopyable, Response: BitwiseCopyable>: ~Copyable {
    /// Retained once (see above); passed on, or released by `deinit`.
    @usableFromInline let client: Unmanaged<Client<Request, Response>>
    @usableFromInline let chunk: Int
    /// Set when the chunk passes on (`discard self` is not allowed for
    /// types with reference-counted fields).
    @usableFromInline var handedOver = false

    @inlinable
    init(client: Unmanaged<Client<Request, Response>>, chunk: Int) {
        self.client = client
        self.chunk = chunk
    }

    @inlinable
    var payloadAddress: UnsafeMutableRawPointer {
        let chunk = self.chunk
        return client._withUnsafeGuaranteedRef { $0.port.requestPayload(chunk) }
    }

    /// The request's memory in the client's pool, not yet initialized
    /// (aligned for `Request`; valid until sent or dropped).
    @inlinable
    public var unsafePayload: UnsafeMutablePointer<Request> { payloadAddress.assumingMemoryBound(to: Request.self) }

    /// Writes `value` in place and returns the sendable request.
    @inlinable
    public consuming func write(_ value: Request) -> LoanedRequest<Request, Response> {
        payloadAddress.initializeMemory(as: Request.self, repeating: value, count: 1)
        handedOver = true
        return LoanedRequest(client: client, chunk: chunk)
    }

    /// Declares `unsafePayload` written. Unsafe: an unwritten request is
    /// sent as whatever the chunk held before (an earlier request's bytes).
    @unsafe @inlinable
    public consuming func assumeInitialized() -> LoanedRequest<Request, Response> {
        handedOver = true
        return LoanedRequest(client: client, chunk: chunk)
    }

    @inlinable
    deinit {
        guard !handedOver else { return }
        let chunk = self.chunk
        client._withUnsafeGuaranteedRef { $0.port.returnRequestLoan(chunk) }
        client.release()
    }
}

/// A written request in a client's pool, ready to send. Sending consumes
/// it; dropping it unsent gives the chunk back.
public struct LoanedRequest<Request: BitwiseCopyable, Response: BitwiseCopyable>: ~Copyable {
    /// Retained once (see above); passed on, or released by `deinit`.
    @usableFromInline let client: Unmanaged<Client<Request, Response>>
    @usableFromInline let chunk: Int
    @usableFromInline var sent = false

    @inlinable
    init(client: Unmanaged<Client<Request, Response>>, chunk: Int) {
        self.client = client
        self.chunk = chunk
    }

    @inlinable
    var payloadAddress: UnsafeMutableRawPointer {
        let chunk = self.chunk
        return client._withUnsafeGuaranteedRef { $0.port.requestPayload(chunk) }
    }

    /// The request, in shared memory.
    @inlinable
    public var payload: Request {
        get { payloadAddress.load(as: Request.self) }
        nonmutating set { payloadAddress.storeBytes(of: newValue, as: Request.self) }
    }

    /// The request's memory in the client's pool (valid until sent or dropped).
    @inlinable
    public var unsafePayload: UnsafeMutablePointer<Request> { payloadAddress.assumingMemoryBound(to: Request.self) }

    /// Delivers the request to one server without copying it (round robin
    /// over the servers with room), waiting at most `timeout` for a server
    /// to connect and for room in its queue.
    /// - Throws: `.noServer` if none connected; `.timedOut` if every
    ///   server's queue stayed full. The chunk goes back either way.
    @inlinable
    public consuming func send(timeout: Duration? = .seconds(1)) throws(ServiceError) -> PendingResponse<Request, Response> {
        sent = true
        // The loan's reference passes to the pending response (or is released
        // on error). The send borrows the client through it: a strong local
        // cost a retain/release pair of the port around the call.
        let client = self.client, chunk = self.chunk
        let sending = client._withUnsafeGuaranteedRef { c in
            Result { () throws(ServiceError) -> UInt64 in try c.port.send(chunk: chunk, length: MemoryLayout<Request>.size, timeout: timeout) }
        }
        switch sending {
        case .success(let id): return PendingResponse(client: client.takeRetainedValue(), requestID: id)
        case .failure(let error):
            client.release()
            throw error
        }
    }

    @inlinable
    deinit {
        guard !sent else { return }
        let chunk = self.chunk
        client._withUnsafeGuaranteedRef { $0.port.returnRequestLoan(chunk) }
        client.release()
    }
}

/// A response received by a client: read-only, in the server's pool.
/// Dropping it hands the chunk back to the server.
public struct ReceivedResponse<Response: BitwiseCopyable>: ~Copyable {
    @usableFromInline let delivery: ResponseDelivery

    @inlinable
    init(_ delivery: ResponseDelivery) { self.delivery = delivery }

    /// The response (copied out of shared memory on each read).
    @inlinable
    public var payload: Response { delivery.address.loadUnaligned(as: Response.self) }

    /// The response in place (valid until released or dropped).
    @inlinable
    public var unsafePayload: UnsafePointer<Response> { delivery.address.assumingMemoryBound(to: Response.self) }

    /// The last response to its request.
    @inlinable
    public var isFinal: Bool { delivery.final }

    /// The request it answers.
    @inlinable
    public var requestID: UInt64 { delivery.requestID }

    /// The server that sent it.
    @inlinable
    public var serverID: UInt64 { delivery.serverID }

    /// Hands the response back now (the same as dropping it).
    @inlinable
    public consuming func release() {}

    @inlinable
    deinit { delivery.release() }
}

/// A request received by a server: read-only, in its client's pool, with
/// the way back to that client. Drop it on the receiving thread (that
/// hands the chunk back); answer with `loanResponse()` or `respond(_:)`.
public struct ReceivedRequest<Request: BitwiseCopyable, Response: BitwiseCopyable>: ~Copyable {
    /// Retained once, released by `deinit`.
    @usableFromInline let unmanagedServer: Unmanaged<Server<Request, Response>>
    @usableFromInline let delivery: RequestDelivery

    @inlinable
    init(server: Server<Request, Response>, delivery: RequestDelivery) {
        unmanagedServer = .passRetained(server)
        self.delivery = delivery
    }

    @inlinable
    var server: Server<Request, Response> { unmanagedServer.takeUnretainedValue() }

    /// The request (copied out of shared memory on each read).
    @inlinable
    public var payload: Request { delivery.address.loadUnaligned(as: Request.self) }

    /// The request in place (valid until released or dropped).
    @inlinable
    public var unsafePayload: UnsafePointer<Request> { delivery.address.assumingMemoryBound(to: Request.self) }

    /// The client that sent it (its port ID).
    @inlinable
    public var clientID: UInt64 { delivery.clientID }

    /// The client's number for it.
    @inlinable
    public var requestID: UInt64 { delivery.requestID }

    /// Loans a response in the server's pool for this request.
    /// - Throws: `.tooManyLoans` (4 at once), `.poolExhausted`.
    @inlinable
    public func loanResponse() throws(ServiceError) -> UninitializedResponse<Request, Response> {
        let chunk = try unmanagedServer._withUnsafeGuaranteedRef { server in
            Result { () throws(ServiceError) -> Int in try server.port.loanResponse() }
        }.get()
        return UninitializedResponse(server: unmanagedServer.retain(), chunk: chunk, clientID: clientID, requestID: requestID)
    }

    /// Copies `value` into a loaned response and sends it (`final: false`
    /// for a stream that continues); false if the client is gone.
    @inlinable @discardableResult
    public func respond(_ value: Response, final: Bool = true, timeout: Duration? = .seconds(1)) throws(ServiceError) -> Bool {
        try loanResponse().write(value).send(final: final, timeout: timeout)
    }

    /// Hands the request back now (the same as dropping it).
    @inlinable
    public consuming func release() {}

    @inlinable
    deinit {
        delivery.release()
        unmanagedServer.release()
    }
}

/// A response loaned from a server's pool for one request, not written
/// yet. Dropping it gives the chunk back.
public struct UninitializedResponse<Request: BitwiseCopyable, Response: BitwiseCopyable>: ~Copyable {
    /// Retained once; passed on, or released by `deinit`.
    @usableFromInline let server: Unmanaged<Server<Request, Response>>
    @usableFromInline let chunk: Int
    @usableFromInline let clientID: UInt64, requestID: UInt64
    @usableFromInline var handedOver = false

    @inlinable
    init(server: Unmanaged<Server<Request, Response>>, chunk: Int, clientID: UInt64, requestID: UInt64) {
        self.server = server
        self.chunk = chunk
        self.clientID = clientID
        self.requestID = requestID
    }

    @inlinable
    var payloadAddress: UnsafeMutableRawPointer {
        let chunk = self.chunk
        return server._withUnsafeGuaranteedRef { $0.port.responsePayload(chunk) }
    }

    /// The response's memory in the server's pool, not yet initialized.
    @inlinable
    public var unsafePayload: UnsafeMutablePointer<Response> { payloadAddress.assumingMemoryBound(to: Response.self) }

    /// Writes `value` in place and returns the sendable response.
    @inlinable
    public consuming func write(_ value: Response) -> LoanedResponse<Request, Response> {
        payloadAddress.initializeMemory(as: Response.self, repeating: value, count: 1)
        handedOver = true
        return LoanedResponse(server: server, chunk: chunk, clientID: clientID, requestID: requestID)
    }

    /// Declares `unsafePayload` written (unsafe, as for requests).
    @unsafe @inlinable
    public consuming func assumeInitialized() -> LoanedResponse<Request, Response> {
        handedOver = true
        return LoanedResponse(server: server, chunk: chunk, clientID: clientID, requestID: requestID)
    }

    @inlinable
    deinit {
        guard !handedOver else { return }
        let chunk = self.chunk
        server._withUnsafeGuaranteedRef { $0.port.returnResponseLoan(chunk) }
        server.release()
    }
}

/// A written response in a server's pool, ready to send to its client.
public struct LoanedResponse<Request: BitwiseCopyable, Response: BitwiseCopyable>: ~Copyable {
    /// Retained once; released when sent or dropped.
    @usableFromInline let server: Unmanaged<Server<Request, Response>>
    @usableFromInline let chunk: Int
    @usableFromInline let clientID: UInt64, requestID: UInt64
    @usableFromInline var sent = false

    @inlinable
    init(server: Unmanaged<Server<Request, Response>>, chunk: Int, clientID: UInt64, requestID: UInt64) {
        self.server = server
        self.chunk = chunk
        self.clientID = clientID
        self.requestID = requestID
    }

    @inlinable
    var payloadAddress: UnsafeMutableRawPointer {
        let chunk = self.chunk
        return server._withUnsafeGuaranteedRef { $0.port.responsePayload(chunk) }
    }

    /// The response, in shared memory.
    @inlinable
    public var payload: Response {
        get { payloadAddress.load(as: Response.self) }
        nonmutating set { payloadAddress.storeBytes(of: newValue, as: Response.self) }
    }

    /// The response's memory in the server's pool (valid until sent or dropped).
    @inlinable
    public var unsafePayload: UnsafeMutablePointer<Response> { payloadAddress.assumingMemoryBound(to: Response.self) }

    /// Delivers the response to its client without copying it (`final:
    /// false` for a stream that continues), waiting at most `timeout` for
    /// room in the client's queue. Returns false if the client is gone.
    /// - Throws: `.timedOut` if the client, alive, made no room.
    @inlinable @discardableResult
    public consuming func send(final: Bool = true, timeout: Duration? = .seconds(1)) throws(ServiceError) -> Bool {
        sent = true
        // Borrowed through the loan's reference, released after the call (a
        // strong local cost a retain/release pair of the port around it).
        let server = self.server, chunk = self.chunk, requestID = self.requestID, clientID = self.clientID
        defer { server.release() }
        return try server._withUnsafeGuaranteedRef { s in
            Result { () throws(ServiceError) -> Bool in
                try s.port.send(chunk: chunk, length: MemoryLayout<Response>.size, final: final, requestID: requestID,
                                clientID: clientID, timeout: timeout)
            }
        }.get()
    }

    @inlinable
    deinit {
        guard !sent else { return }
        let chunk = self.chunk
        server._withUnsafeGuaranteedRef { $0.port.returnResponseLoan(chunk) }
        server.release()
    }
}
