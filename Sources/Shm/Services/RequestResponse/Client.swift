import ShmSystem
@_spi(ShmInternals) import ShmPrimitives

/// Sends requests and receives their responses. Use a client from one
/// thread at a time.
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

    /// Sends `request`, waiting at most `timeout` for room in the request
    /// queue (`MessageQueue` in the service segment; copies the value).
    @inlinable
    public func send(_ request: Request, timeout: Duration? = .seconds(1)) throws(ServiceError) -> PendingResponse<Request, Response> {
        var copy = request
        return PendingResponse(client: self, requestID: try port.send(payload: &copy, length: MemoryLayout<Request>.size,
                                                                      timeout: timeout))
    }

    /// The next response for `requestID` and whether it is the last one.
    @inlinable
    func next(for requestID: UInt64, timeout: Duration?) throws(ServiceError) -> (Response, Bool) {
        try withUnsafeTemporaryAllocation(byteCount: max(1, MemoryLayout<Response>.size), alignment: MemoryLayout<Response>.alignment) { buffer in
            Result { () throws(ServiceError) -> (Response, Bool) in
                let (final, length) = try port.next(for: requestID, into: buffer.baseAddress!, timeout: timeout)
                guard length == MemoryLayout<Response>.size else { throw port.shortMessage("response", length, MemoryLayout<Response>.size) }
                return (buffer.baseAddress!.loadUnaligned(as: Response.self), final)
            }
        }.get()
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

    /// The next response in the stream and whether it was the last one.
    @inlinable
    public func next(timeout: Duration? = .seconds(1)) throws(ServiceError) -> (value: Response, isFinal: Bool) {
        let (value, final) = try client.next(for: requestID, timeout: timeout)
        return (value, final)
    }

    /// The (first) response, for single-response exchanges.
    @inlinable
    public func response(timeout: Duration? = .seconds(1)) throws(ServiceError) -> Response {
        try next(timeout: timeout).value
    }
}
