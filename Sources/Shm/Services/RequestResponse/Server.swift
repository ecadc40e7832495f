import ShmSystem
@_spi(ShmInternals) import ShmPrimitives

/// Receives requests and answers them. Use a server from one thread at a time.
public final class Server<Request: BitwiseCopyable, Response: BitwiseCopyable>: @unchecked Sendable {
    public let service: RequestResponseService<Request, Response>
    @usableFromInline let port: ServerPort
    public var portID: UInt64 { port.portID }
    var strategy: WaitStrategy { port.strategy }

    init(service: RequestResponseService<Request, Response>, port: ServerPort) {
        self.service = service
        self.port = port
    }

    /// The next request, or nil if none is waiting.
    @inlinable
    public func tryReceive() throws(ServiceError) -> ActiveRequest<Request, Response>? {
        try receive(timeout: .zero, throwOnTimeout: false)
    }

    /// The next request, waiting at most `timeout` (nil: for ever).
    @inlinable
    public func receive(timeout: Duration? = nil) throws(ServiceError) -> ActiveRequest<Request, Response> {
        try receive(timeout: timeout, throwOnTimeout: true)!
    }

    @inlinable
    func receive(timeout: Duration?, throwOnTimeout: Bool) throws(ServiceError) -> ActiveRequest<Request, Response>? {
        try withUnsafeTemporaryAllocation(byteCount: max(1, MemoryLayout<Request>.size), alignment: MemoryLayout<Request>.alignment) { buffer in
            Result { () throws(ServiceError) -> ActiveRequest<Request, Response>? in
                guard let (clientID, requestID, length) = try port.receive(into: buffer.baseAddress!, timeout: timeout,
                                                                           throwOnTimeout: throwOnTimeout) else { return nil }
                guard length == MemoryLayout<Request>.size else { throw port.shortMessage("request", length, MemoryLayout<Request>.size) }
                return ActiveRequest(server: self, clientID: clientID, requestID: requestID,
                                     request: buffer.baseAddress!.loadUnaligned(as: Request.self))
            }
        }.get()
    }
}

/// A request a server took from the queue, and the way back to its client.
public struct ActiveRequest<Request: BitwiseCopyable, Response: BitwiseCopyable> {
    @usableFromInline let server: Server<Request, Response>
    public let clientID: UInt64
    public let requestID: UInt64
    /// The request.
    public let request: Request

    @inlinable
    init(server: Server<Request, Response>, clientID: UInt64, requestID: UInt64, request: Request) {
        self.server = server
        self.clientID = clientID
        self.requestID = requestID
        self.request = request
    }

    /// Sends one response (`final: false` for a stream that continues).
    /// Returns false if the client is gone.
    /// Safe from any thread (several requests may be answered at once).
    @inlinable @discardableResult
    public func respond(_ value: Response, final: Bool = true, timeout: Duration? = .seconds(1)) throws(ServiceError) -> Bool {
        var copy = value
        return try server.port.respond(payload: &copy, length: MemoryLayout<Response>.size, final: final, requestID: requestID, clientID: clientID, timeout: timeout)
    }
}
