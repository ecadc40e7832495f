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
    }

    /// A client: registers in the service and creates its response queue
    /// (segment `svc.<name>.c<id>`). `waitStrategy` is how it waits for
    /// room in the request queue and for responses.
    public func client(waitStrategy: WaitStrategy = .default) throws(ServiceError) -> Client<Request, Response> {
        try Client(service: self, strategy: waitStrategy)
    }

    /// A server: registers in the service; takes requests from its queue.
    public func server(waitStrategy: WaitStrategy = .default) throws(ServiceError) -> Server<Request, Response> {
        try Server(service: self, strategy: waitStrategy)
    }

    /// Live servers registered now.
    public var liveServers: Int { attachment.layout.entries(.b).filter { $0.owner.isAlive }.count }

    var responseQueueCapacity: Int { IndexQueue.capacity(atLeast: config.queueDepth * config.maxServers) }
}

/// Sends requests and receives their responses.
public final class Client<Request: BitwiseCopyable, Response: BitwiseCopyable>: @unchecked Sendable {
    public let service: RequestResponseService<Request, Response>
    public let portID: UInt64
    let slotIndex: Int
    let segment: SharedMemorySegment
    let responses: MPMCQueue
    var nextRequestID: UInt64 = 0
    /// Responses that arrived for a request other than the one being waited for.
    var stash: [UInt64: [(Response, Bool)]] = [:]
    let strategy: WaitStrategy

    static var kind: SegmentKind { SegmentKind("RRCL") }

    init(service: RequestResponseService<Request, Response>, strategy: WaitStrategy = .default) throws(ServiceError) {
        self.service = service
        self.strategy = strategy
        let id = UInt64.random(in: 1...UInt64.max)
        let capacity = service.responseQueueCapacity
        let slot = RequestEntry.header + MemoryLayout<Response>.size
        segment = try serviceCall {
            try SharedMemorySegment.create(service.attachment.name.portSegmentName("c", id),
                                           size: MPMCQueue.requiredSize(capacity: capacity, slotSize: slot),
                                           kind: Client.kind, lifetime: .persistent) { data in
                _ = try MPMCQueue.initialize(data, capacity: capacity, slotSize: slot)
            }
        }
        do { responses = try MPMCQueue(attaching: segment.data, anchor: segment) }
        catch { throw .queue(error) }
        portID = id
        do {
            slotIndex = try service.attachment.layout.register(.a, portID: id, nodeHash: service.attachment.node.hash) { _ in }
        } catch {
            segment.unlinkIfStillLinked()
            throw error
        }
    }

    deinit {
        service.attachment.layout.unregister(.a, index: slotIndex, portID: portID)
        segment.unlinkIfStillLinked()
    }

    /// Sends `request`, waiting at most `timeout` for room in the request queue.
    public func send(_ request: Request, timeout: Duration? = .seconds(1)) throws(ServiceError) -> PendingResponse<Request, Response> {
        nextRequestID &+= 1
        let id = nextRequestID
        try withUnsafeTemporaryAllocation(byteCount: RequestEntry.header + MemoryLayout<Request>.size, alignment: 16) { buffer in
            buffer.storeBytes(of: portID, toByteOffset: 0, as: UInt64.self)
            buffer.storeBytes(of: id, toByteOffset: 8, as: UInt64.self)
            buffer.storeBytes(of: UInt64(MemoryLayout<Request>.size), toByteOffset: 16, as: UInt64.self)
            buffer.storeBytes(of: request, toByteOffset: RequestEntry.header, as: Request.self)
            return Result { () throws(ServiceError) in
                do throws(QueueError) { try service.requests.enqueue(UnsafeRawBufferPointer(buffer), timeout: timeout, strategy: strategy) }
                catch .timedOut { throw .timedOut(timeout) }
                catch { throw .queue(error) }
            }
        }.get()
        return PendingResponse(client: self, requestID: id)
    }

    /// The next response for `requestID`, or nil once its final response was taken.
    func next(for requestID: UInt64, timeout: Duration?) throws(ServiceError) -> (Response, Bool) {
        if var queued = stash[requestID], !queued.isEmpty {
            let first = queued.removeFirst()
            stash[requestID] = queued.isEmpty ? nil : queued
            return first
        }
        let end = deadline(after: timeout)
        let slot = RequestEntry.header + MemoryLayout<Response>.size
        return try withUnsafeTemporaryAllocation(byteCount: slot, alignment: 16) { buffer in
            Result { () throws(ServiceError) -> (Response, Bool) in
                while true {
                    let remaining: Duration? = end.map { .nanoseconds(Int64(bitPattern: max(0, $0 &- monotonicNanoseconds()))) }
                    let n: Int
                    do throws(QueueError) { n = try responses.dequeue(into: buffer, timeout: remaining, strategy: strategy) }
                    catch .timedOut { throw .timedOut(timeout) }
                    catch { throw .queue(error) }
                    guard n == slot, buffer.load(fromByteOffset: 16, as: UInt64.self) == UInt64(MemoryLayout<Response>.size) else {
                        throw .corrupt(service: service.name, reason: "response of \(n) bytes")
                    }
                    let id = buffer.load(fromByteOffset: 0, as: UInt64.self)
                    let final = buffer.load(fromByteOffset: 8, as: UInt64.self) & 1 == 1
                    let value = buffer.loadUnaligned(fromByteOffset: RequestEntry.header, as: Response.self)
                    if id == requestID { return (value, final) }
                    if id <= nextRequestID { stash[id, default: []].append((value, final)) } // else: not ours, drop
                }
            }
        }.get()
    }
}

/// A request sent and the responses still to come for it.
public struct PendingResponse<Request: BitwiseCopyable, Response: BitwiseCopyable> {
    let client: Client<Request, Response>
    public let requestID: UInt64

    /// The next response in the stream and whether it was the last one.
    public func next(timeout: Duration? = .seconds(1)) throws(ServiceError) -> (value: Response, isFinal: Bool) {
        let (value, final) = try client.next(for: requestID, timeout: timeout)
        return (value, final)
    }

    /// The (first) response, for single-response exchanges.
    public func response(timeout: Duration? = .seconds(1)) throws(ServiceError) -> Response {
        try next(timeout: timeout).value
    }
}

/// Receives requests and answers them.
public final class Server<Request: BitwiseCopyable, Response: BitwiseCopyable>: @unchecked Sendable {
    public let service: RequestResponseService<Request, Response>
    public let portID: UInt64
    let slotIndex: Int
    let strategy: WaitStrategy
    var clients: [UInt64: (SharedMemorySegment, MPMCQueue)] = [:]

    init(service: RequestResponseService<Request, Response>, strategy: WaitStrategy = .default) throws(ServiceError) {
        self.service = service
        self.strategy = strategy
        portID = UInt64.random(in: 1...UInt64.max)
        slotIndex = try service.attachment.layout.register(.b, portID: portID, nodeHash: service.attachment.node.hash) { _ in }
    }

    deinit { service.attachment.layout.unregister(.b, index: slotIndex, portID: portID) }

    /// The next request, or nil if none is waiting.
    public func tryReceive() throws(ServiceError) -> ActiveRequest<Request, Response>? {
        try receive(timeout: .zero, throwOnTimeout: false)
    }

    /// The next request, waiting at most `timeout`.
    public func receive(timeout: Duration? = nil) throws(ServiceError) -> ActiveRequest<Request, Response> {
        try receive(timeout: timeout, throwOnTimeout: true)!
    }

    func receive(timeout: Duration?, throwOnTimeout: Bool) throws(ServiceError) -> ActiveRequest<Request, Response>? {
        let slot = RequestEntry.header + MemoryLayout<Request>.size
        return try withUnsafeTemporaryAllocation(byteCount: slot, alignment: 16) { buffer in
            Result { () throws(ServiceError) -> ActiveRequest<Request, Response>? in
                let n: Int
                do throws(QueueError) {
                    if timeout == .zero {
                        guard let got = try service.requests.tryDequeue(into: buffer) else { return nil }
                        n = got
                    } else {
                        n = try service.requests.dequeue(into: buffer, timeout: timeout, strategy: strategy)
                    }
                } catch .timedOut {
                    if throwOnTimeout { throw .timedOut(timeout) }
                    return nil
                } catch {
                    throw .queue(error)
                }
                guard n == slot, buffer.load(fromByteOffset: 16, as: UInt64.self) == UInt64(MemoryLayout<Request>.size) else {
                    throw .corrupt(service: service.name, reason: "request of \(n) bytes")
                }
                return ActiveRequest(server: self, clientID: buffer.load(fromByteOffset: 0, as: UInt64.self),
                                     requestID: buffer.load(fromByteOffset: 8, as: UInt64.self),
                                     request: buffer.loadUnaligned(fromByteOffset: RequestEntry.header, as: Request.self))
            }
        }.get()
    }

    /// Sends one response to `clientID`'s queue. Returns false if that client is gone.
    func respond(_ value: Response, final: Bool, requestID: UInt64, clientID: UInt64, timeout: Duration?) throws(ServiceError) -> Bool {
        guard let queue = responseQueue(of: clientID) else { return false }
        return try withUnsafeTemporaryAllocation(byteCount: RequestEntry.header + MemoryLayout<Response>.size, alignment: 16) { buffer in
            buffer.storeBytes(of: requestID, toByteOffset: 0, as: UInt64.self)
            buffer.storeBytes(of: UInt64(final ? 1 : 0), toByteOffset: 8, as: UInt64.self)
            buffer.storeBytes(of: UInt64(MemoryLayout<Response>.size), toByteOffset: 16, as: UInt64.self)
            buffer.storeBytes(of: value, toByteOffset: RequestEntry.header, as: Response.self)
            return Result { () throws(ServiceError) -> Bool in
                do throws(QueueError) {
                    try queue.enqueue(UnsafeRawBufferPointer(buffer), timeout: timeout, strategy: strategy)
                    return true
                } catch .timedOut {
                    // A client that stopped reading (or died): forget it.
                    clients[clientID] = nil
                    throw .timedOut(timeout)
                } catch {
                    clients[clientID] = nil
                    throw .queue(error)
                }
            }
        }.get()
    }

    func responseQueue(of clientID: UInt64) -> MPMCQueue? {
        if let (_, queue) = clients[clientID] { return queue }
        guard service.attachment.layout.entries(.a).contains(where: { $0.portID == clientID && $0.owner.isAlive }),
              let segment = try? SharedMemorySegment.open(service.attachment.name.portSegmentName("c", clientID),
                                                          kind: Client<Request, Response>.kind, timeout: .milliseconds(100)),
              let queue = try? MPMCQueue(attaching: segment.data, anchor: segment),
              queue.slotSize == RequestEntry.header + MemoryLayout<Response>.size else { return nil }
        if clients.count > 4 * service.config.maxClients { clients.removeAll() }
        clients[clientID] = (segment, queue)
        return queue
    }
}

/// A request a server took from the queue, and the way back to its client.
public struct ActiveRequest<Request: BitwiseCopyable, Response: BitwiseCopyable> {
    let server: Server<Request, Response>
    public let clientID: UInt64
    public let requestID: UInt64
    /// The request.
    public let request: Request

    /// Sends one response (`final: false` for a stream that continues).
    /// Returns false if the client is gone.
    @discardableResult
    public func respond(_ value: Response, final: Bool = true, timeout: Duration? = .seconds(1)) throws(ServiceError) -> Bool {
        try server.respond(value, final: final, requestID: requestID, clientID: clientID, timeout: timeout)
    }
}
