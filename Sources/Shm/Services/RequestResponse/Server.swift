import ShmSystem
@_spi(ShmInternals) import ShmPrimitives

/// Receives requests and answers them. Receive from one thread at a time;
/// `ActiveRequest`s may be answered from any thread.
///
/// ```swift
/// let request = try server.receiveInPlace()                       // in the client's pool
/// let response = try request.loanResponse().write(AddResponse(sum: request.payload.left + request.payload.right))
/// try response.send()                                             // to that client only
/// ```
public final class Server<Request: BitwiseCopyable, Response: BitwiseCopyable>: @unchecked Sendable {
    public let service: RequestResponseService<Request, Response>
    @usableFromInline let port: ServerPort
    public var portID: UInt64 { port.portID }
    var strategy: WaitStrategy { port.strategy }

    init(service: RequestResponseService<Request, Response>, port: ServerPort) {
        self.service = service
        self.port = port
    }

    /// Requests still held keep the port's inbox registered (so clients do
    /// not reuse their chunks) until they are dropped.
    deinit { port.requests.retire() }

    /// The next request, copied, or nil if none is waiting.
    @inlinable
    public func tryReceive() throws(ServiceError) -> ActiveRequest<Request, Response>? {
        guard let request = try tryReceiveInPlace() else { return nil }
        return ActiveRequest(request)
    }

    /// The next request, copied, waiting at most `timeout` (nil: for ever).
    @inlinable
    public func receive(timeout: Duration? = nil) throws(ServiceError) -> ActiveRequest<Request, Response> {
        ActiveRequest(try receiveInPlace(timeout: timeout))
    }

    /// The next request, read in place in its client's pool, or nil if none
    /// is waiting. Drop it (on this thread) to hand the chunk back.
    /// - Throws: `.tooManyBorrowed` past `queueDepth` held requests;
    ///   `.corrupt` for a request of another size.
    @inlinable
    public func tryReceiveInPlace() throws(ServiceError) -> ReceivedRequest<Request, Response>? {
        guard let delivery = try port.tryReceive() else { return nil }
        return try checked(delivery)
    }

    /// The next request, read in place, waiting at most `timeout` (nil: for ever).
    /// - Throws: `.timedOut`, and what `tryReceiveInPlace` throws.
    @inlinable
    public func receiveInPlace(timeout: Duration? = nil) throws(ServiceError) -> ReceivedRequest<Request, Response> {
        try checked(try port.receive(timeout: timeout))
    }

    @inlinable
    func checked(_ delivery: RequestDelivery) throws(ServiceError) -> ReceivedRequest<Request, Response> {
        guard delivery.bytes == MemoryLayout<Request>.size else {
            delivery.release()
            throw port.shortMessage("request", delivery.bytes, MemoryLayout<Request>.size)
        }
        return ReceivedRequest(server: self, delivery: delivery)
    }
}

/// A request a server took, copied, and the way back to its client.
/// `Sendable`: it may be answered from any thread.
public struct ActiveRequest<Request: BitwiseCopyable, Response: BitwiseCopyable>: @unchecked Sendable {
    @usableFromInline let server: Server<Request, Response>
    public let clientID: UInt64
    public let requestID: UInt64
    /// The request.
    public let request: Request

    /// Copies the request out of `received`, which is then dropped (its
    /// chunk goes back to the client): to answer it later or on another thread.
    @inlinable
    public init(_ received: consuming ReceivedRequest<Request, Response>) {
        server = received.server
        clientID = received.clientID
        requestID = received.requestID
        request = received.payload
    }

    /// Sends one response (`final: false` for a stream that continues),
    /// copied into a chunk of the server's pool, waiting at most `timeout`
    /// for room in the client's queue. Returns false if the client is gone.
    /// Safe from any thread (several requests may be answered at once).
    /// - Throws: `.timedOut` if the client, alive, made no room;
    ///   `.poolExhausted` if clients hold every response chunk.
    @inlinable @discardableResult
    public func respond(_ value: Response, final: Bool = true, timeout: Duration? = .seconds(1)) throws(ServiceError) -> Bool {
        var copy = value
        return try server.port.respond(payload: &copy, length: MemoryLayout<Response>.size, final: final, requestID: requestID,
                                       clientID: clientID, timeout: timeout)
    }

    /// Loans a response in the server's pool for this request (write it in place, then send it).
    @inlinable
    public func loanResponse() throws(ServiceError) -> UninitializedResponse<Request, Response> {
        let chunk = try server.port.loanResponse()
        return UninitializedResponse(server: .passRetained(server), chunk: chunk, clientID: clientID, requestID: requestID)
    }
}
