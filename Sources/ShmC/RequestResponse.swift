import CSwiftShm
import Shm

// Request/response for C (swiftshm.h), over the byte-sized form of the
// service (`RawRequestResponseService`) that typed Swift services share.
// Calls are shaped as loans and three of the four are the shared memory
// itself: a request loan is a chunk of the client's pool, a response loan
// one of the server's, a received response is read in place in the
// server's pool. A received request is copied out of the client's pool
// (once, into a buffer of the server handle's) and its chunk handed back at
// once: an active request may be answered and freed on any thread, and
// handing a chunk back belongs to the receiving thread.

/// Heap buffers of one size for loans and received messages, one kept spare
/// so that a steady exchange does not allocate.
final class MessageBuffers {
    let size: Int, alignment: Int
    private var spare: UnsafeMutableRawPointer?
    init(size: Int, alignment: Int) {
        self.size = max(1, size)
        self.alignment = max(16, alignment)
    }
    func take() -> UnsafeMutableRawPointer {
        if let buffer = spare {
            spare = nil
            return buffer
        }
        return .allocate(byteCount: size, alignment: alignment)
    }
    func give(_ buffer: UnsafeMutableRawPointer) {
        if spare == nil { spare = buffer } else { buffer.deallocate() }
    }
    deinit { spare?.deallocate() }
}

final class ClientHandle {
    let port: ClientPort
    let service: RawRequestResponseService
    var sendTimeout: Duration? = .seconds(1)
    init(_ port: ClientPort, service: RawRequestResponseService) {
        self.port = port
        self.service = service
    }
}

/// A chunk of the client's pool, loaned.
final class RequestLoanHandle {
    let owner: ClientHandle
    let chunk: Int
    let buffer: UnsafeMutableRawPointer
    let bytes: Int
    var sent = false
    init(owner: ClientHandle, bytes: Int) throws(ServiceError) {
        self.owner = owner
        self.bytes = bytes
        chunk = try owner.port.loanRequest()
        buffer = owner.port.requestPayload(chunk)
    }
    deinit { if !sent { owner.port.returnRequestLoan(chunk) } }
}

final class PendingResponseHandle {
    let owner: ClientHandle
    let requestID: UInt64
    var finished = false
    init(owner: ClientHandle, requestID: UInt64) {
        self.owner = owner
        self.requestID = requestID
    }
}

/// A response in place in the server's pool; released, its chunk goes back.
final class ResponseHandle {
    let owner: ClientHandle
    let delivery: ResponseDelivery
    init(owner: ClientHandle, delivery: ResponseDelivery) {
        self.owner = owner
        self.delivery = delivery
    }
    deinit { delivery.release() }
}

final class ServerHandle {
    let port: ServerPort
    let service: RawRequestResponseService
    var sendTimeout: Duration? = .seconds(1)
    let requests: MessageBuffers
    init(_ port: ServerPort, service: RawRequestResponseService) {
        self.port = port
        self.service = service
        requests = MessageBuffers(size: service.requestSize, alignment: service.requestType.alignment)
    }
}

final class ActiveRequestHandle {
    let owner: ServerHandle
    let clientID: UInt64, requestID: UInt64
    let buffer: UnsafeMutableRawPointer
    var bytes = 0
    /// A final response went out: the request takes no more.
    var finished = false
    init(owner: ServerHandle, clientID: UInt64, requestID: UInt64, buffer: UnsafeMutableRawPointer) {
        self.owner = owner
        self.clientID = clientID
        self.requestID = requestID
        self.buffer = buffer
    }
    deinit { owner.requests.give(buffer) }

    /// Sends `bytes` bytes at `payload` as a response; false if the client is gone.
    func respond(_ payload: UnsafeRawPointer, bytes: Int, final: Bool) throws -> Bool {
        guard !finished else { throw CABIError.state("the request was answered with a final response already") }
        let delivered = try owner.port.respond(payload: payload, length: bytes, final: final, requestID: requestID,
                                               clientID: clientID, timeout: owner.sendTimeout)
        if final || !delivered { finished = true }
        return delivered
    }
}

/// A chunk of the server's pool, loaned for one request's response (any thread).
final class ResponseLoanHandle {
    let owner: ActiveRequestHandle
    let chunk: Int
    let buffer: UnsafeMutableRawPointer
    let bytes: Int
    var sent = false
    init(owner: ActiveRequestHandle, bytes: Int) throws(ServiceError) {
        self.owner = owner
        self.bytes = bytes
        chunk = try owner.owner.port.loanResponse()
        buffer = owner.owner.port.responsePayload(chunk)
    }
    deinit { if !sent { owner.owner.port.returnResponseLoan(chunk) } }

    /// Sends the loaned chunk; false if the client is gone.
    func send(final: Bool) throws -> Bool {
        let request = owner
        guard !request.finished else { throw CABIError.state("the request was answered with a final response already") }
        sent = true
        let delivered = try request.owner.port.send(chunk: chunk, length: bytes, final: final, requestID: request.requestID,
                                                    clientID: request.clientID, timeout: request.owner.sendTimeout)
        if final || !delivered { request.finished = true }
        return delivered
    }
}

@_cdecl("shm_reqres_options_init")
public func shm_reqres_options_init(_ options: UnsafeMutablePointer<shm_reqres_options>?) {
    guard let options else { return }
    options.pointee = shm_reqres_options(
        struct_size: UInt32(MemoryLayout<shm_reqres_options>.size), type_name: nil, request_size: 4096, request_alignment: 1,
        response_size: 4096, max_clients: 8, max_servers: 2, queue_depth: 16, open_mode: UInt32(SHM_OPEN_OR_CREATE))
}

@_cdecl("shm_reqres_open")
public func shm_reqres_open(_ node: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ options: UnsafePointer<shm_reqres_options>?,
                            _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    cabi {
        let node = try object(node, Box<Node>.self, "node").value
        let service = try string(name, "service")
        var o = shm_reqres_options()
        shm_reqres_options_init(&o)
        if let options {
            guard options.pointee.struct_size >= UInt32(MemoryLayout<shm_reqres_options>.size) else {
                throw CABIError.invalid("options.struct_size \(options.pointee.struct_size): call shm_reqres_options_init first")
            }
            o = options.pointee
        }
        guard o.request_size <= 1 << 30, o.response_size <= 1 << 30, o.request_alignment >= 1, o.request_alignment <= 4096,
              o.request_alignment & (o.request_alignment - 1) == 0 else {
            throw CABIError.invalid("request_size \(o.request_size), response_size \(o.response_size) (0…1 GiB each), "
                                    + "request_alignment \(o.request_alignment) (a power of two ≤ 4096)")
        }
        let typeName = o.type_name.map { String(cString: $0) } ?? "bytes -> bytes"
        let opened = try RawRequestResponseService(
            node: node, name: try ServiceName(service),
            request: PayloadType(name: typeName, size: Int(o.request_size), alignment: Int(o.request_alignment)),
            responseSize: Int(o.response_size),
            config: RequestResponseConfig(maxClients: Int(o.max_clients), maxServers: Int(o.max_servers), queueDepth: Int(o.queue_depth)),
            mode: try openMode(o.open_mode))
        try store(handle(Box(opened)), out, "out")
        return SHM_OK
    }
}

@_cdecl("shm_reqres_free")
public func shm_reqres_free(_ service: OpaquePointer?) { release(service, Box<RawRequestResponseService>.self) }

@_cdecl("shm_reqres_max_request_bytes")
public func shm_reqres_max_request_bytes(_ service: OpaquePointer?) -> UInt64 {
    (try? object(service, Box<RawRequestResponseService>.self, "service")).map { UInt64($0.value.requestSize) } ?? 0
}

@_cdecl("shm_reqres_max_response_bytes")
public func shm_reqres_max_response_bytes(_ service: OpaquePointer?) -> UInt64 {
    (try? object(service, Box<RawRequestResponseService>.self, "service")).map { UInt64($0.value.responseSize) } ?? 0
}

// MARK: Clients

@_cdecl("shm_client_create")
public func shm_client_create(_ service: OpaquePointer?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    cabi {
        let s = try object(service, Box<RawRequestResponseService>.self, "service").value
        try store(handle(ClientHandle(try s.clientPort(waitStrategy: .default), service: s)), out, "out")
        return SHM_OK
    }
}

@_cdecl("shm_client_free")
public func shm_client_free(_ client: OpaquePointer?) { release(client, ClientHandle.self) }

@_cdecl("shm_client_set_send_timeout")
public func shm_client_set_send_timeout(_ client: OpaquePointer?, _ nanoseconds: Int64) -> Int32 {
    cabi {
        try object(client, ClientHandle.self, "client").sendTimeout = timeout(nanoseconds)
        return SHM_OK
    }
}

@_cdecl("shm_client_loan")
public func shm_client_loan(_ client: OpaquePointer?, _ bytes: UInt64, _ loan: UnsafeMutablePointer<OpaquePointer?>?,
                            _ data: UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> Int32 {
    cabi {
        let owner = try object(client, ClientHandle.self, "client")
        guard loan != nil, data != nil else { throw CABIError.invalid("loan or data is NULL") }
        guard bytes <= UInt64(owner.service.requestSize) else {
            throw CABIError.invalid("a request of \(bytes) bytes: requests of this service hold 0…\(owner.service.requestSize)")
        }
        let box = try RequestLoanHandle(owner: owner, bytes: Int(bytes))
        loan!.pointee = handle(box)
        data!.pointee = box.buffer
        return SHM_OK
    }
}

@_cdecl("shm_request_send")
public func shm_request_send(_ loan: OpaquePointer?, _ pending: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    cabi {
        let box = try object(loan, RequestLoanHandle.self, "loan")
        defer { release(loan, RequestLoanHandle.self) }
        guard pending != nil else { throw CABIError.invalid("pending is NULL") }
        box.sent = true // the port hands the chunk on (or back, on failure)
        let id = try box.owner.port.send(chunk: box.chunk, length: box.bytes, timeout: box.owner.sendTimeout)
        pending!.pointee = handle(PendingResponseHandle(owner: box.owner, requestID: id))
        return SHM_OK
    }
}

@_cdecl("shm_request_discard")
public func shm_request_discard(_ loan: OpaquePointer?) { release(loan, RequestLoanHandle.self) }

@_cdecl("shm_client_send_copy")
public func shm_client_send_copy(_ client: OpaquePointer?, _ data: UnsafeRawPointer?, _ bytes: UInt64,
                                 _ pending: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    cabi {
        let owner = try object(client, ClientHandle.self, "client")
        guard data != nil || bytes == 0, pending != nil else { throw CABIError.invalid("data or pending is NULL") }
        guard bytes <= UInt64(owner.service.requestSize) else {
            throw CABIError.invalid("a request of \(bytes) bytes: requests of this service hold 0…\(owner.service.requestSize)")
        }
        // The port copies straight from the caller's bytes into a loaned chunk.
        let id = try owner.port.send(payload: data ?? UnsafeRawPointer(bitPattern: 16)!, length: Int(bytes), timeout: owner.sendTimeout)
        pending!.pointee = handle(PendingResponseHandle(owner: owner, requestID: id))
        return SHM_OK
    }
}

@_cdecl("shm_pending_response_id")
public func shm_pending_response_id(_ pending: OpaquePointer?) -> UInt64 {
    (try? object(pending, PendingResponseHandle.self, "pending"))?.requestID ?? 0
}

/// Waits for the next response of `pending`, in place in the server's pool.
private func nextResponse(_ pending: PendingResponseHandle, _ nanoseconds: Int64) throws -> (ResponseHandle, Int, Bool) {
    guard !pending.finished else { throw CABIError.state("the final response of request \(pending.requestID) was received") }
    let owner = pending.owner
    // A zero timeout looks once; the port reports .timedOut.
    let delivery = try owner.port.receive(for: pending.requestID, timeout: timeout(nanoseconds))
    let response = ResponseHandle(owner: owner, delivery: delivery)
    guard delivery.bytes <= owner.service.responseSize else {
        throw CABIError.corrupt("a response of \(delivery.bytes) bytes, at most \(owner.service.responseSize)")
    }
    if delivery.final { pending.finished = true }
    return (response, delivery.bytes, delivery.final)
}

@_cdecl("shm_pending_response_receive")
public func shm_pending_response_receive(_ pending: OpaquePointer?, _ nanoseconds: Int64, _ response: UnsafeMutablePointer<OpaquePointer?>?,
                                         _ data: UnsafeMutablePointer<UnsafeRawPointer?>?, _ bytes: UnsafeMutablePointer<UInt64>?,
                                         _ isFinal: UnsafeMutablePointer<Int32>?) -> Int32 {
    cabi {
        let p = try object(pending, PendingResponseHandle.self, "pending")
        guard response != nil, data != nil, bytes != nil else { throw CABIError.invalid("response, data or bytes is NULL") }
        let (box, length, final) = try nextResponse(p, nanoseconds)
        response!.pointee = handle(box)
        data!.pointee = box.delivery.address
        bytes!.pointee = UInt64(length)
        isFinal?.pointee = final ? 1 : 0
        return SHM_OK
    }
}

@_cdecl("shm_pending_response_receive_copy")
public func shm_pending_response_receive_copy(_ pending: OpaquePointer?, _ nanoseconds: Int64, _ buffer: UnsafeMutableRawPointer?,
                                              _ capacity: UInt64, _ bytes: UnsafeMutablePointer<UInt64>?,
                                              _ isFinal: UnsafeMutablePointer<Int32>?) -> Int32 {
    cabi {
        let p = try object(pending, PendingResponseHandle.self, "pending")
        guard let bytes, buffer != nil || capacity == 0 else { throw CABIError.invalid("buffer or bytes is NULL") }
        let (box, length, final) = try nextResponse(p, nanoseconds)
        bytes.pointee = UInt64(length)
        isFinal?.pointee = final ? 1 : 0
        guard UInt64(length) <= capacity else { throw CABIError.invalid("a response of \(length) bytes does not fit \(capacity)") }
        if length > 0, let buffer { buffer.copyMemory(from: box.delivery.address, byteCount: length) }
        return SHM_OK
    }
}

@_cdecl("shm_pending_response_free")
public func shm_pending_response_free(_ pending: OpaquePointer?) { release(pending, PendingResponseHandle.self) }

@_cdecl("shm_response_release")
public func shm_response_release(_ response: OpaquePointer?) { release(response, ResponseHandle.self) }

// MARK: Servers

@_cdecl("shm_server_create")
public func shm_server_create(_ service: OpaquePointer?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    cabi {
        let s = try object(service, Box<RawRequestResponseService>.self, "service").value
        try store(handle(ServerHandle(try s.serverPort(waitStrategy: .default), service: s)), out, "out")
        return SHM_OK
    }
}

@_cdecl("shm_server_free")
public func shm_server_free(_ server: OpaquePointer?) { release(server, ServerHandle.self) }

@_cdecl("shm_server_set_send_timeout")
public func shm_server_set_send_timeout(_ server: OpaquePointer?, _ nanoseconds: Int64) -> Int32 {
    cabi {
        try object(server, ServerHandle.self, "server").sendTimeout = timeout(nanoseconds)
        return SHM_OK
    }
}

@_cdecl("shm_server_receive")
public func shm_server_receive(_ server: OpaquePointer?, _ nanoseconds: Int64, _ request: UnsafeMutablePointer<OpaquePointer?>?,
                               _ data: UnsafeMutablePointer<UnsafeRawPointer?>?, _ bytes: UnsafeMutablePointer<UInt64>?) -> Int32 {
    cabi {
        let owner = try object(server, ServerHandle.self, "server")
        guard request != nil, data != nil, bytes != nil else { throw CABIError.invalid("request, data or bytes is NULL") }
        let buffer = owner.requests.take()
        guard let got = try owner.port.receive(into: buffer, timeout: timeout(nanoseconds), throwOnTimeout: nanoseconds != 0) else {
            owner.requests.give(buffer)
            return failure(SHM_E_TIMED_OUT, "no request waiting")
        }
        let box = ActiveRequestHandle(owner: owner, clientID: got.clientID, requestID: got.requestID, buffer: buffer)
        box.bytes = got.length
        request!.pointee = handle(box)
        data!.pointee = UnsafeRawPointer(buffer)
        bytes!.pointee = UInt64(got.length)
        return SHM_OK
    }
}

@_cdecl("shm_active_request_client")
public func shm_active_request_client(_ request: OpaquePointer?) -> UInt64 {
    (try? object(request, ActiveRequestHandle.self, "request"))?.clientID ?? 0
}

@_cdecl("shm_active_request_id")
public func shm_active_request_id(_ request: OpaquePointer?) -> UInt64 {
    (try? object(request, ActiveRequestHandle.self, "request"))?.requestID ?? 0
}

@_cdecl("shm_active_request_loan")
public func shm_active_request_loan(_ request: OpaquePointer?, _ bytes: UInt64, _ loan: UnsafeMutablePointer<OpaquePointer?>?,
                                    _ data: UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> Int32 {
    cabi {
        let owner = try object(request, ActiveRequestHandle.self, "request")
        guard loan != nil, data != nil else { throw CABIError.invalid("loan or data is NULL") }
        guard !owner.finished else { throw CABIError.state("the request was answered with a final response already") }
        guard bytes <= UInt64(owner.owner.service.responseSize) else {
            throw CABIError.invalid("a response of \(bytes) bytes: responses of this service hold 0…\(owner.owner.service.responseSize)")
        }
        let box = try ResponseLoanHandle(owner: owner, bytes: Int(bytes))
        loan!.pointee = handle(box)
        data!.pointee = box.buffer
        return SHM_OK
    }
}

@_cdecl("shm_response_send")
public func shm_response_send(_ loan: OpaquePointer?, _ isFinal: Int32, _ delivered: UnsafeMutablePointer<Int32>?) -> Int32 {
    cabi {
        let box = try object(loan, ResponseLoanHandle.self, "loan")
        defer { release(loan, ResponseLoanHandle.self) }
        let ok = try box.send(final: isFinal != 0)
        delivered?.pointee = ok ? 1 : 0
        return SHM_OK
    }
}

@_cdecl("shm_response_discard")
public func shm_response_discard(_ loan: OpaquePointer?) { release(loan, ResponseLoanHandle.self) }

@_cdecl("shm_active_request_respond_copy")
public func shm_active_request_respond_copy(_ request: OpaquePointer?, _ data: UnsafeRawPointer?, _ bytes: UInt64, _ isFinal: Int32,
                                            _ delivered: UnsafeMutablePointer<Int32>?) -> Int32 {
    cabi {
        let owner = try object(request, ActiveRequestHandle.self, "request")
        guard data != nil || bytes == 0 else { throw CABIError.invalid("data is NULL") }
        guard bytes <= UInt64(owner.owner.service.responseSize) else {
            throw CABIError.invalid("a response of \(bytes) bytes: responses of this service hold 0…\(owner.owner.service.responseSize)")
        }
        let ok = try owner.respond(data ?? UnsafeRawPointer(bitPattern: 16)!, bytes: Int(bytes), final: isFinal != 0)
        delivered?.pointee = ok ? 1 : 0
        return SHM_OK
    }
}

@_cdecl("shm_active_request_free")
public func shm_active_request_free(_ request: OpaquePointer?) { release(request, ActiveRequestHandle.self) }
