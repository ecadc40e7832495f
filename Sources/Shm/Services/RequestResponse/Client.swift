import ShmSystem
@_spi(ShmInternals) import ShmPrimitives

/// Sends requests and receives their responses. Use a client from one
/// thread at a time.
///
/// ```swift
/// let request = try client.loanUninitialized().write(AddRequest(left: 1, right: 2))   // in the client's pool
/// let pending = try request.send()
/// let response = try pending.receive(timeout: .seconds(1))   // in the server's pool
/// print(response.payload.sum)                                 // dropped → handed back
/// ```
///
/// A thin typed face over a non-generic `ClientPort`: its methods are
/// `@inlinable`, so they are specialized where they are called and the hot
/// path makes no generic metadata lookups.
public final class Client<Request: BitwiseCopyable, Response: BitwiseCopyable>: @unchecked Sendable {
    public let service: RequestResponseService<Request, Response>
    @usableFromInline let port: ClientPort
    public var portID: UInt64 { port.portID }

    init(service: RequestResponseService<Request, Response>, port: ClientPort) {
        self.service = service
        self.port = port
    }

    /// Responses still held keep the port's inbox registered (so servers do
    /// not reuse their chunks) until they are dropped.
    deinit { port.responses.retire() }

    /// Loans an uninitialized request in the client's pool (no copy: write
    /// it in place, then send it).
    /// - Throws: `.tooManyLoans` (`queueDepth` + 4 at once, counting requests
    ///   waiting for a server to connect), `.poolExhausted` if servers
    ///   hold every request chunk.
    @inlinable
    public func loanUninitialized() throws(ServiceError) -> UninitializedRequest<Request, Response> {
        let chunk = try port.loanRequest() // first: a failed loan must not leave a retain behind
        return UninitializedRequest(client: .passRetained(self), chunk: chunk)
    }

    /// Copies `request` into a loaned request and sends it to one server,
    /// waiting at most `timeout` for a server to connect and for room in
    /// its queue.
    /// - Throws: `.noServer`, `.timedOut`, and what `loanUninitialized` throws.
    @inlinable
    public func send(_ request: Request, timeout: Duration? = .seconds(1)) throws(ServiceError) -> PendingResponse<Request, Response> {
        try loanUninitialized().write(request).send(timeout: timeout)
    }

    /// The next response for `requestID` (copied) and whether it is the last one.
    @inlinable
    func next(for requestID: UInt64, timeout: Duration?) throws(ServiceError) -> (Response, Bool) {
        let response = try receive(for: requestID, timeout: timeout)
        return (response.payload, response.isFinal)
    }

    /// The next response for `requestID`, in place.
    @inlinable
    func receive(for requestID: UInt64, timeout: Duration?) throws(ServiceError) -> ReceivedResponse<Response> {
        let delivery = try port.receive(for: requestID, timeout: timeout)
        guard delivery.bytes == MemoryLayout<Response>.size else {
            delivery.release()
            throw port.shortMessage("response", delivery.bytes, MemoryLayout<Response>.size)
        }
        return ReceivedResponse(delivery)
    }
}

/// A request sent and the responses still to come for it.
public struct PendingResponse<Request: BitwiseCopyable, Response: BitwiseCopyable> {
    @usableFromInline let client: Client<Request, Response>
    public let requestID: UInt64

    @inlinable
    init(client: Client<Request, Response>, requestID: UInt64) {
        self.client = client
        self.requestID = requestID
    }

    /// The next response in the stream, read in place in the server's pool
    /// (dropping it hands the chunk back), waiting at most `timeout`.
    /// - Throws: `.timedOut`; `.corrupt` for a response of another size.
    @inlinable
    public func receive(timeout: Duration? = .seconds(1)) throws(ServiceError) -> ReceivedResponse<Response> {
        try client.receive(for: requestID, timeout: timeout)
    }

    /// The next response in the stream (copied) and whether it was the last one.
    @inlinable
    public func next(timeout: Duration? = .seconds(1)) throws(ServiceError) -> (value: Response, isFinal: Bool) {
        let (value, final) = try client.next(for: requestID, timeout: timeout)
        return (value, final)
    }

    /// The (first) response, copied, for single-response exchanges.
    @inlinable
    public func response(timeout: Duration? = .seconds(1)) throws(ServiceError) -> Response {
        try next(timeout: timeout).value
    }
}
