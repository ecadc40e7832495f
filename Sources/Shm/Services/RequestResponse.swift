import Synchronization
import ShmSystem
import ShmPrimitives

/// Configuration of a request/response service.
public struct RequestResponseConfig: Hashable, Sendable {
    public var maxClients: Int
    public var maxServers: Int
    /// Requests waiting for a server, and responses waiting for each client.
    public var queueDepth: Int

    public init(maxClients: Int = 8, maxServers: Int = 2, queueDepth: Int = 16) {
        self.maxClients = maxClients
        self.maxServers = maxServers
        self.queueDepth = queueDepth
    }
}

/// Layout of one request in the service's request queue and of one
/// response in a client's response queue (both MPMC slots).
///
/// ```text
/// request:  +0 clientID UInt64, +8 requestID UInt64, +16 length UInt64, +24 payload
/// response: +0 requestID UInt64, +8 flags UInt64 (bit 0: final), +16 length UInt64, +24 payload
/// ```
enum RequestEntry {
    static let header = 24
}

extension Node {
    /// Opens or creates a request/response service.
    ///
    /// - Parameter typeName: names the pair of types across programs; defaults
    ///   to `"<Request> -> <Response>"` with module-qualified names.
    public func requestResponse<Request: BitwiseCopyable, Response: BitwiseCopyable>(
        _ service: String, request: Request.Type, response: Response.Type, typeName: String? = nil,
        config: RequestResponseConfig = .init(), mode: OpenMode = .openOrCreate
    ) throws(ServiceError) -> RequestResponseService<Request, Response> {
        try RequestResponseService(node: self, name: ServiceName(service), typeName: typeName, config: config, mode: mode)
    }
}

/// A request/response service: clients send typed requests, servers answer
/// with one response or a stream of them. Requests wait in one queue in the
/// service segment (any server may take one: load is shared); each client
/// has a response queue in a segment of its own. Messages are copied (they
/// are small, typed values); see publish/subscribe for zero-copy payloads.
public final class RequestResponseService<Request: BitwiseCopyable, Response: BitwiseCopyable>: @unchecked Sendable {
    let attachment: ServiceAttachment
    public let config: RequestResponseConfig
    public var name: String { attachment.name.value }
    let requests: MPMCQueue

    init(node: Node, name: ServiceName, typeName: String?, config: RequestResponseConfig, mode: OpenMode) throws(ServiceError) {
        guard (1...1024).contains(config.maxClients), (1...256).contains(config.maxServers), (1...65536).contains(config.queueDepth) else {
            throw .invalidConfiguration("maxClients 1…1024, maxServers 1…256, queueDepth 1…65536")
        }
        let type = typeName ?? "\(String(reflecting: Request.self)) -> \(String(reflecting: Response.self))"
        let layoutConfig = ServiceLayout.Config(
            pattern: .requestResponse, payload: PayloadType(name: type, size: MemoryLayout<Request>.size, alignment: MemoryLayout<Request>.alignment),
            maxA: config.maxClients, maxB: config.maxServers, bufferSize: config.queueDepth, history: 0, maxLoans: 0,
            maxBorrowed: 0, overflow: 0, requestSize: MemoryLayout<Request>.size, responseSize: MemoryLayout<Response>.size,
            maxEventID: 0)
        attachment = try ServiceAttachment(node: node, name: name, config: layoutConfig, mode: mode)
        self.config = config
        do { requests = try MPMCQueue(attaching: attachment.layout.patternArea, anchor: attachment) }
        catch { throw .corrupt(service: name.value, reason: "request queue: \(error)") }
        // Never trust the queue header: a slot of another size would wedge every server.
        guard requests.slotSize == RequestEntry.header + MemoryLayout<Request>.size else {
            throw .corrupt(service: name.value, reason: "request queue slots of \(requests.slotSize) bytes")
        }
    }

    /// A client: registers in the service and creates its response queue
    /// (segment `svc.<name>.c<id>`). `waitStrategy` is how it waits for
    /// room in the request queue and for responses.
    public func client(waitStrategy: WaitStrategy = .default) throws(ServiceError) -> Client<Request, Response> {
        Client(service: self, port: try ClientPort(attachment: attachment, requests: requests,
                                                   requestSize: MemoryLayout<Request>.size, responseSize: MemoryLayout<Response>.size,
                                                   responseCapacity: responseQueueCapacity, strategy: waitStrategy))
    }

    /// A server: registers in the service; takes requests from its queue.
    public func server(waitStrategy: WaitStrategy = .default) throws(ServiceError) -> Server<Request, Response> {
        Server(service: self, port: try ServerPort(attachment: attachment, requests: requests,
                                                   requestSize: MemoryLayout<Request>.size, responseSize: MemoryLayout<Response>.size,
                                                   maxClients: config.maxClients, strategy: waitStrategy))
    }

    /// Live servers registered now.
    public var liveServers: Int { attachment.layout.entries(.b).filter { $0.owner.isAlive }.count }

    var responseQueueCapacity: Int { IndexQueue.capacity(atLeast: config.queueDepth * config.maxServers) }
}

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
    /// queue (`MPMCQueue` in the service segment; copies the value).
    @inlinable
    public func send(_ request: Request, timeout: Duration? = .seconds(1)) throws(ServiceError) -> PendingResponse<Request, Response> {
        var copy = request
        return PendingResponse(client: self, requestID: try port.send(payload: &copy, timeout: timeout))
    }

    /// The next response for `requestID` and whether it is the last one.
    @inlinable
    func next(for requestID: UInt64, timeout: Duration?) throws(ServiceError) -> (Response, Bool) {
        try withUnsafeTemporaryAllocation(byteCount: max(1, MemoryLayout<Response>.size), alignment: MemoryLayout<Response>.alignment) { buffer in
            Result { () throws(ServiceError) -> (Response, Bool) in
                let final = try port.next(for: requestID, into: buffer.baseAddress!, timeout: timeout)
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
                guard let (clientID, requestID) = try port.receive(into: buffer.baseAddress!, timeout: timeout,
                                                                   throwOnTimeout: throwOnTimeout) else { return nil }
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
        return try server.port.respond(payload: &copy, final: final, requestID: requestID, clientID: clientID, timeout: timeout)
    }
}
