import ShmSystem
@_spi(ShmInternals) import ShmPrimitives

extension Node {
    /// Opens or creates a request/response service.
    ///
    /// - Parameters:
    ///   - service: the service's name (segment `svc.<name>` in /dev/shm).
    ///   - request: the `BitwiseCopyable` type clients send.
    ///   - response: the `BitwiseCopyable` type servers answer with.
    ///   - typeName: names the pair of types across programs; defaults to
    ///     `"<Request> -> <Response>"` with module-qualified names.
    ///   - config: limits, used when this call creates the service and
    ///     compared with the stored ones when it opens it.
    ///   - mode: open, create, or either (`.openOrCreate`).
    /// - Throws: `.incompatible` naming every difference if the service exists
    ///   with other types or limits.
    public func requestResponse<Request: BitwiseCopyable, Response: BitwiseCopyable>(
        _ service: String, request: Request.Type, response: Response.Type, typeName: String? = nil,
        config: RequestResponseConfig = .init(), mode: OpenMode = .openOrCreate
    ) throws(ServiceError) -> RequestResponseService<Request, Response> {
        try RequestResponseService(node: self, name: ServiceName(service), typeName: typeName, config: config, mode: mode)
    }
}

/// A request/response service: clients send typed requests, servers answer
/// with one response or a stream of them, without copying either way.
///
/// Each client and server owns a pool and an inbox (`svc.<name>.p<id>`,
/// `svc.<name>.s<id>`), as publish/subscribe ports do: a client loans a
/// request in its pool, writes it in place and delivers its reference to
/// one server (round robin over servers with room: load is shared); the
/// server reads it in place, loans a response in its own pool and delivers
/// it to that client only. `Client.send(_:)`, `PendingResponse.response()`,
/// `Server.receive()` and `ActiveRequest.respond(_:)` copy the values for
/// convenience; `Client.loanUninitialized()`, `PendingResponse.receive()`,
/// `Server.receiveInPlace()` and `ReceivedRequest.loanResponse()` do not.
public final class RequestResponseService<Request: BitwiseCopyable, Response: BitwiseCopyable>: @unchecked Sendable {
    /// The service seen as sizes, shared with the C ABI's byte-sized form.
    package let core: RawRequestResponseService
    public var config: RequestResponseConfig { core.config }
    public var name: String { core.name }
    var attachment: ServiceAttachment { core.attachment }

    init(node: Node, name: ServiceName, typeName: String?, config: RequestResponseConfig, mode: OpenMode) throws(ServiceError) {
        let type = typeName ?? "\(String(reflecting: Request.self)) -> \(String(reflecting: Response.self))"
        core = try RawRequestResponseService(
            node: node, name: name,
            request: PayloadType(name: type, size: MemoryLayout<Request>.size, alignment: MemoryLayout<Request>.alignment),
            responseSize: MemoryLayout<Response>.size, config: config, mode: mode)
    }

    /// A client: creates its request pool and response inbox (segments
    /// `svc.<name>.p<id>` and `.s<id>`, memory reserved up front) and
    /// registers in the service. `waitStrategy` is how it waits for room in
    /// a server's queue and for responses.
    public func client(waitStrategy: WaitStrategy = .default) throws(ServiceError) -> Client<Request, Response> {
        Client(service: self, port: try core.clientPort(waitStrategy: waitStrategy))
    }

    /// A server: creates its response pool and request inbox and registers
    /// in the service; clients connect to it on their next request.
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
    /// The ports' pools and queues, sized from `config`.
    let sizes: RequestResponseSizes
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
            maxProducers: config.maxClients, maxConsumers: config.maxServers, bufferSize: config.queueDepth, history: 0, maxLoans: 0,
            maxBorrowed: 0, overflow: 0, requestSize: request.size, responseSize: responseSize,
            maxEventID: 0)
        attachment = try ServiceAttachment(node: node, name: name, config: layoutConfig, mode: mode)
        self.config = config
        requestSize = request.size
        self.responseSize = responseSize
        requestType = request
        sizes = RequestResponseSizes(config, request: request, responseSize: responseSize)
    }

    package func clientPort(waitStrategy: WaitStrategy) throws(ServiceError) -> ClientPort {
        try ClientPort(attachment: attachment, sizes: sizes, waitStrategy: waitStrategy)
    }

    package func serverPort(waitStrategy: WaitStrategy) throws(ServiceError) -> ServerPort {
        try ServerPort(attachment: attachment, sizes: sizes, waitStrategy: waitStrategy)
    }

    /// Live servers registered now.
    package var liveServers: Int { attachment.layout.entries(.consumers).filter { $0.owner.isAlive }.count }
}

extension Node {
    /// Opens an existing request/response service whatever its types, as
    /// sizes (for the NATS bridge and tools).
    package func openAnyRequestResponse(_ service: String) throws(ServiceError) -> RawRequestResponseService {
        let (name, existing) = try ServiceLayout.existingConfig(of: service, pattern: .requestResponse,
                                                                requested: "request/response")
        return try RawRequestResponseService(
            node: self, name: name, request: existing.payload, responseSize: existing.responseSize,
            config: RequestResponseConfig(maxClients: existing.maxProducers, maxServers: existing.maxConsumers, queueDepth: existing.bufferSize),
            mode: .open)
    }
}
