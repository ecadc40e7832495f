import ShmSystem
import ShmPrimitives

/// A client's state and hot path, independent of the request and response
/// types (sizes are given): the typed `Client` stores a request into
/// `requestPayload`, calls `send`, and reads responses from `responsePayload`.
@usableFromInline
final class ClientPort: @unchecked Sendable {
    let attachment: ServiceAttachment
    let requests: MPMCQueue
    let responses: MPMCQueue
    let segment: SharedMemorySegment
    @usableFromInline let portID: UInt64
    let slotIndex: Int
    let strategy: WaitStrategy
    let requestSize: Int, responseSize: Int
    /// Scratch slots: the request being sent, the response being read.
    let requestSlot: UnsafeMutableRawPointer
    let responseSlot: UnsafeMutableRawPointer
    @usableFromInline let requestPayload: UnsafeMutableRawPointer
    @usableFromInline let responsePayload: UnsafeMutableRawPointer
    /// [next request ID]
    let local: UnsafeMutablePointer<UInt64>
    /// Responses that arrived for a request other than the one being waited for.
    var stash: [UInt64: [(bytes: [UInt8], final: Bool)]] = [:]

    static var kind: SegmentKind { SegmentKind("RRCL") }

    init(attachment: ServiceAttachment, requests: MPMCQueue, requestSize: Int, responseSize: Int,
         responseCapacity: Int, strategy: WaitStrategy) throws(ServiceError) {
        self.attachment = attachment
        self.requests = requests
        self.strategy = strategy
        self.requestSize = requestSize
        self.responseSize = responseSize
        let id = UInt64.random(in: 1...UInt64.max)
        let slot = RequestEntry.header + responseSize
        segment = try serviceCall {
            try SharedMemorySegment.create(attachment.name.portSegmentName("c", id),
                                           size: MPMCQueue.requiredSize(capacity: responseCapacity, slotSize: slot),
                                           kind: ClientPort.kind, lifetime: .persistent) { data in
                _ = try MPMCQueue.initialize(data, capacity: responseCapacity, slotSize: slot)
            }
        }
        do { responses = try MPMCQueue(attaching: segment.data, anchor: segment) }
        catch {
            segment.unlinkIfStillLinked()
            throw .queue(error)
        }
        portID = id
        do {
            slotIndex = try attachment.layout.register(.a, portID: id, nodeHash: attachment.node.hash) { _ in }
        } catch {
            segment.unlinkIfStillLinked()
            throw error
        }
        requestSlot = .allocate(byteCount: RequestEntry.header + max(requestSize, 1), alignment: 16)
        responseSlot = .allocate(byteCount: RequestEntry.header + max(responseSize, 1), alignment: 16)
        requestPayload = requestSlot + RequestEntry.header
        responsePayload = responseSlot + RequestEntry.header
        local = .allocate(capacity: 1)
        local.initialize(to: 0)
    }

    deinit {
        attachment.layout.unregister(.a, index: slotIndex, portID: portID)
        segment.unlinkIfStillLinked()
        requestSlot.deallocate()
        responseSlot.deallocate()
        local.deallocate()
    }

    /// Sends the request in `requestPayload`; returns its ID.
    @usableFromInline
    func send(timeout: Duration?) throws(ServiceError) -> UInt64 {
        local.pointee &+= 1
        let id = local.pointee
        requestSlot.storeBytes(of: portID, toByteOffset: 0, as: UInt64.self)
        requestSlot.storeBytes(of: id, toByteOffset: 8, as: UInt64.self)
        requestSlot.storeBytes(of: UInt64(requestSize), toByteOffset: 16, as: UInt64.self)
        do throws(QueueError) {
            try requests.enqueue(UnsafeRawBufferPointer(start: requestSlot, count: RequestEntry.header + requestSize),
                                 timeout: timeout, strategy: strategy)
        } catch {
            if case .timedOut = error { throw .timedOut(timeout) }
            throw .queue(error)
        }
        return id
    }

    /// Waits for the next response to `requestID` and leaves it in
    /// `responsePayload`; returns whether it is the last one.
    @usableFromInline
    func next(for requestID: UInt64, timeout: Duration?) throws(ServiceError) -> Bool {
        if !stash.isEmpty, var queued = stash[requestID], !queued.isEmpty {
            let first = queued.removeFirst()
            stash[requestID] = queued.isEmpty ? nil : queued
            first.bytes.withUnsafeBytes { responsePayload.copyMemory(from: $0.baseAddress!, byteCount: min($0.count, responseSize)) }
            return first.final
        }
        let end = deadline(after: timeout)
        let slot = RequestEntry.header + responseSize
        let buffer = UnsafeMutableRawBufferPointer(start: responseSlot, count: slot)
        while true {
            let remaining: Duration? = end.map { .nanoseconds(Int64(bitPattern: max(0, $0 &- monotonicNanoseconds()))) }
            let n: Int
            do throws(QueueError) { n = try responses.dequeue(into: buffer, timeout: remaining, strategy: strategy) }
            catch {
                if case .timedOut = error { throw .timedOut(timeout) }
                throw .queue(error)
            }
            guard n == slot, responseSlot.load(fromByteOffset: 16, as: UInt64.self) == UInt64(responseSize) else {
                throw .corrupt(service: attachment.name.value, reason: "response of \(n) bytes")
            }
            let id = responseSlot.load(fromByteOffset: 0, as: UInt64.self)
            let final = responseSlot.load(fromByteOffset: 8, as: UInt64.self) & 1 == 1
            if id == requestID { return final }
            if id <= local.pointee { // an earlier request's: keep it; not ours at all: drop
                stash[id, default: []].append((Array(UnsafeRawBufferPointer(start: responsePayload, count: responseSize)), final))
            }
        }
    }
}

/// A server's state and hot path, independent of the request and response types.
@usableFromInline
final class ServerPort: @unchecked Sendable {
    let attachment: ServiceAttachment
    let requests: MPMCQueue
    @usableFromInline let portID: UInt64
    let slotIndex: Int
    let strategy: WaitStrategy
    let requestSize: Int, responseSize: Int
    let requestSlot: UnsafeMutableRawPointer
    let responseSlot: UnsafeMutableRawPointer
    @usableFromInline let requestPayload: UnsafeMutableRawPointer
    @usableFromInline let responsePayload: UnsafeMutableRawPointer
    /// Response queues of clients we answered, by client ID.
    var clients: [UInt64: (SharedMemorySegment, MPMCQueue)] = [:]
    /// The last client answered (most exchanges answer the same one again).
    var lastClient: (id: UInt64, queue: MPMCQueue)?

    let maxClients: Int

    init(attachment: ServiceAttachment, requests: MPMCQueue, requestSize: Int, responseSize: Int,
         maxClients: Int, strategy: WaitStrategy) throws(ServiceError) {
        self.maxClients = maxClients
        self.attachment = attachment
        self.requests = requests
        self.strategy = strategy
        self.requestSize = requestSize
        self.responseSize = responseSize
        portID = UInt64.random(in: 1...UInt64.max)
        slotIndex = try attachment.layout.register(.b, portID: portID, nodeHash: attachment.node.hash) { _ in }
        requestSlot = .allocate(byteCount: RequestEntry.header + max(requestSize, 1), alignment: 16)
        responseSlot = .allocate(byteCount: RequestEntry.header + max(responseSize, 1), alignment: 16)
        requestPayload = requestSlot + RequestEntry.header
        responsePayload = responseSlot + RequestEntry.header
    }

    deinit {
        attachment.layout.unregister(.b, index: slotIndex, portID: portID)
        requestSlot.deallocate()
        responseSlot.deallocate()
    }

    /// Takes the next request into `requestPayload`; returns its client and
    /// request IDs, or nil on timeout when `throwOnTimeout` is false.
    @usableFromInline
    func receive(timeout: Duration?, throwOnTimeout: Bool) throws(ServiceError) -> (UInt64, UInt64)? {
        let slot = RequestEntry.header + requestSize
        let buffer = UnsafeMutableRawBufferPointer(start: requestSlot, count: slot)
        let n: Int
        do throws(QueueError) {
            if timeout == .zero {
                guard let got = try requests.tryDequeue(into: buffer) else { return nil }
                n = got
            } else {
                n = try requests.dequeue(into: buffer, timeout: timeout, strategy: strategy)
            }
        } catch {
            if case .timedOut = error {
                if throwOnTimeout { throw .timedOut(timeout) }
                return nil
            }
            throw .queue(error)
        }
        guard n == slot, requestSlot.load(fromByteOffset: 16, as: UInt64.self) == UInt64(requestSize) else {
            throw .corrupt(service: attachment.name.value, reason: "request of \(n) bytes")
        }
        return (requestSlot.load(fromByteOffset: 0, as: UInt64.self), requestSlot.load(fromByteOffset: 8, as: UInt64.self))
    }

    /// Sends the response in `responsePayload` to `clientID`'s queue.
    /// Returns false if that client is gone.
    @usableFromInline
    func respond(final: Bool, requestID: UInt64, clientID: UInt64, timeout: Duration?) throws(ServiceError) -> Bool {
        guard let queue = responseQueue(of: clientID) else { return false }
        responseSlot.storeBytes(of: requestID, toByteOffset: 0, as: UInt64.self)
        responseSlot.storeBytes(of: UInt64(final ? 1 : 0), toByteOffset: 8, as: UInt64.self)
        responseSlot.storeBytes(of: UInt64(responseSize), toByteOffset: 16, as: UInt64.self)
        do throws(QueueError) {
            try queue.enqueue(UnsafeRawBufferPointer(start: responseSlot, count: RequestEntry.header + responseSize),
                              timeout: timeout, strategy: strategy)
            return true
        } catch {
            // A client that stopped reading (or died): forget it.
            forget(clientID)
            if case .timedOut = error { throw .timedOut(timeout) }
            throw .queue(error)
        }
    }

    private func forget(_ clientID: UInt64) {
        clients[clientID] = nil
        if lastClient?.id == clientID { lastClient = nil }
    }

    func responseQueue(of clientID: UInt64) -> MPMCQueue? {
        if let last = lastClient, last.id == clientID { return last.queue }
        if let (_, queue) = clients[clientID] {
            lastClient = (clientID, queue)
            return queue
        }
        guard attachment.layout.entries(.a).contains(where: { $0.portID == clientID && $0.owner.isAlive }),
              let segment = try? SharedMemorySegment.open(attachment.name.portSegmentName("c", clientID),
                                                          kind: ClientPort.kind, timeout: .milliseconds(100)),
              let queue = try? MPMCQueue(attaching: segment.data, anchor: segment),
              queue.slotSize == RequestEntry.header + responseSize else { return nil }
        if clients.count > 4 * maxClients { clients.removeAll() }
        clients[clientID] = (segment, queue)
        lastClient = (clientID, queue)
        return queue
    }
}
