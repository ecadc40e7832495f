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
    /// The service seen as sizes, shared with the C ABI's byte-sized form.
    package let core: RawRequestResponseService
    public var config: RequestResponseConfig { core.config }
    public var name: String { core.name }
    var requests: MPMCQueue { core.requests }
    var attachment: ServiceAttachment { core.attachment }

    init(node: Node, name: ServiceName, typeName: String?, config: RequestResponseConfig, mode: OpenMode) throws(ServiceError) {
        let type = typeName ?? "\(String(reflecting: Request.self)) -> \(String(reflecting: Response.self))"
        core = try RawRequestResponseService(
            node: node, name: name,
            request: PayloadType(name: type, size: MemoryLayout<Request>.size, alignment: MemoryLayout<Request>.alignment),
            responseSize: MemoryLayout<Response>.size, config: config, mode: mode)
    }

    /// A client: registers in the service and creates its response queue
    /// (segment `svc.<name>.c<id>`). `waitStrategy` is how it waits for
    /// room in the request queue and for responses.
    public func client(waitStrategy: WaitStrategy = .default) throws(ServiceError) -> Client<Request, Response> {
        Client(service: self, port: try core.clientPort(waitStrategy: waitStrategy))
    }

    /// A server: registers in the service; takes requests from its queue.
    public func server(waitStrategy: WaitStrategy = .default) throws(ServiceError) -> Server<Request, Response> {
        Server(service: self, port: try core.serverPort(waitStrategy: waitStrategy))
    }

    /// Live servers registered now.
    public var liveServers: Int { core.liveServers }
}

/// A request/response service seen as sizes rather than types: requests of
/// at most `requestSize` bytes and responses of at most `responseSize`
/// bytes, each carrying its length. The typed `RequestResponseService` and
/// the C ABI (`shm_reqres_*`) are both built on it, so a C or Python peer
/// that names the same type, size and alignment talks to a typed Swift one.
package final class RawRequestResponseService: @unchecked Sendable {
    let attachment: ServiceAttachment
    package let config: RequestResponseConfig
    package var name: String { attachment.name.value }
    let requests: MPMCQueue
    /// The most bytes a request / a response holds.
    package let requestSize: Int, responseSize: Int
    /// The request type's name, size and alignment, as stored in the service.
    package let requestType: PayloadType

    package init(node: Node, name: ServiceName, request: PayloadType, responseSize: Int,
                 config: RequestResponseConfig, mode: OpenMode) throws(ServiceError) {
        guard (1...1024).contains(config.maxClients), (1...256).contains(config.maxServers), (1...65536).contains(config.queueDepth) else {
            throw .invalidConfiguration("maxClients 1…1024, maxServers 1…256, queueDepth 1…65536")
        }
        // Sizes of 0 are empty types (`Void`-like requests); the cap keeps a
        // slot (header + payload) within the queue's 32-bit slot size.
        guard request.size >= 0, request.size <= 1 << 30, responseSize >= 0, responseSize <= 1 << 30, request.alignment >= 1 else {
            throw .invalidConfiguration("request size \(request.size), response size \(responseSize): 0…1 GiB each")
        }
        let layoutConfig = ServiceLayout.Config(
            pattern: .requestResponse, payload: request,
            maxA: config.maxClients, maxB: config.maxServers, bufferSize: config.queueDepth, history: 0, maxLoans: 0,
            maxBorrowed: 0, overflow: 0, requestSize: request.size, responseSize: responseSize,
            maxEventID: 0)
        attachment = try ServiceAttachment(node: node, name: name, config: layoutConfig, mode: mode)
        self.config = config
        requestSize = request.size
        self.responseSize = responseSize
        requestType = request
        do { requests = try MPMCQueue(attaching: attachment.layout.patternArea, anchor: attachment) }
        catch { throw .corrupt(service: name.value, reason: "request queue: \(error)") }
        // Never trust the queue header: a slot of another size would wedge every server.
        guard requests.slotSize == RequestEntry.header + request.size else {
            throw .corrupt(service: name.value, reason: "request queue slots of \(requests.slotSize) bytes")
        }
    }

    package func clientPort(waitStrategy: WaitStrategy) throws(ServiceError) -> ClientPort {
        try ClientPort(attachment: attachment, requests: requests, requestSize: requestSize, responseSize: responseSize,
                       responseCapacity: responseQueueCapacity, strategy: waitStrategy)
    }

    package func serverPort(waitStrategy: WaitStrategy) throws(ServiceError) -> ServerPort {
        try ServerPort(attachment: attachment, requests: requests, requestSize: requestSize, responseSize: responseSize,
                       maxClients: config.maxClients, strategy: waitStrategy)
    }

    /// Live servers registered now.
    package var liveServers: Int { attachment.layout.entries(.b).filter { $0.owner.isAlive }.count }

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

extension Node {
    /// Opens an existing request/response service whatever its types, as
    /// sizes (for the NATS bridge and tools).
    package func openAnyRequestResponse(_ service: String) throws(ServiceError) -> RawRequestResponseService {
        let (name, existing) = try ServiceLayout.existingConfig(of: service, pattern: .requestResponse,
                                                                requested: "request/response")
        return try RawRequestResponseService(
            node: self, name: name, request: existing.payload, responseSize: existing.responseSize,
            config: RequestResponseConfig(maxClients: existing.maxA, maxServers: existing.maxB, queueDepth: existing.bufferSize),
            mode: .open)
    }
}
