import Synchronization
import ShmSystem
@_spi(ShmInternals) import ShmPrimitives

/// A client's state and hot path, independent of the request and response
/// types (sizes are given): the typed `Client` stores a request into
/// `requestPayload`, calls `send`, and reads responses from `responsePayload`.
@usableFromInline
package final class ClientPort: @unchecked Sendable {
    let attachment: ServiceAttachment
    let requests: MessageQueue
    let responses: MessageQueue
    let segment: SharedMemorySegment
    @usableFromInline package let portID: UInt64
    let slotIndex: Int
    let strategy: WaitStrategy
    /// This port's waits (its adaptive spin budget lives as long as the port;
    /// a client is used from one thread at a time).
    var waiter: Waiter
    let requestSize: Int, responseSize: Int
    /// [next request ID]
    let local: UnsafeMutablePointer<UInt64>
    /// Responses that arrived for a request other than the one being waited
    /// for (bounded: the oldest requests' are dropped past `stashLimit`).
    var stash: [UInt64: [(bytes: [UInt8], final: Bool)]] = [:]
    static let stashLimit = 1024

    static var kind: SegmentKind { SegmentKind("RRCL") }

    /// A typed peer's error for a message shorter than its type (sent by a
    /// byte-sized peer of the same service).
    @usableFromInline
    func shortMessage(_ what: String, _ length: Int, _ size: Int) -> ServiceError {
        .corrupt(service: attachment.name.value, reason: "\(what) of \(length) bytes for a type of \(size)")
    }

    init(attachment: ServiceAttachment, requests: MessageQueue, requestSize: Int, responseSize: Int,
         responseCapacity: Int, strategy: WaitStrategy) throws(ServiceError) {
        self.attachment = attachment
        self.requests = requests
        self.strategy = strategy
        self.waiter = Waiter(strategy)
        self.requestSize = requestSize
        self.responseSize = responseSize
        let id = UInt64.random(in: 1...UInt64.max)
        let slot = RequestEntry.header + responseSize
        segment = try serviceCall {
            try SharedMemorySegment.create(attachment.name.portSegmentName(.responses, id),
                                           size: MessageQueue.requiredSize(capacity: responseCapacity, slotSize: slot),
                                           kind: ClientPort.kind, lifetime: .persistent) { data in
                _ = try MessageQueue.initialize(data, capacity: responseCapacity, slotSize: slot)
            }
        }
        do { responses = try MessageQueue(attaching: segment.data, anchor: segment) }
        catch {
            segment.unlinkIfStillLinked()
            throw .queue(error)
        }
        portID = id
        do {
            slotIndex = try attachment.layout.register(.producers, portID: id, nodeHash: attachment.node.hash) { _ in }
        } catch {
            segment.unlinkIfStillLinked()
            throw error
        }
        local = .allocate(capacity: 1)
        local.initialize(to: 0)
    }

    deinit {
        attachment.layout.unregister(.producers, index: slotIndex, portID: portID)
        segment.unlinkIfStillLinked()
        local.deallocate()
    }

    /// Sends the request at `payload` (`length` ≤ `requestSize` bytes);
    /// returns its ID. The queue slot is built on this call's stack.
    @usableFromInline
    package func send(payload: UnsafeRawPointer, length: Int, timeout: Duration?) throws(ServiceError) -> UInt64 {
        precondition(length >= 0 && length <= requestSize, "request of \(length) bytes, at most \(requestSize)")
        local.pointee &+= 1
        let id = local.pointee
        let count = RequestEntry.header + requestSize
        return try withUnsafeTemporaryAllocation(byteCount: count, alignment: 16) { slot in
            Result { () throws(ServiceError) -> UInt64 in
                let base = slot.baseAddress!
                base.storeBytes(of: portID, toByteOffset: RequestEntry.Offset.clientID, as: UInt64.self)
                base.storeBytes(of: id, toByteOffset: RequestEntry.Offset.requestID, as: UInt64.self)
                base.storeBytes(of: UInt64(length), toByteOffset: RequestEntry.Offset.length, as: UInt64.self)
                (base + RequestEntry.Offset.payload).copyMemory(from: payload, byteCount: length)
                do throws(QueueError) {
                    // A local copy, stored back: no access to the port held across the wait.
                    var w = waiter
                    defer { waiter = w }
                    try requests.send(UnsafeRawBufferPointer(slot), timeout: timeout, waiter: &w)
                } catch {
                    if case .timedOut = error { throw .timedOut(after: timeout) }
                    throw .queue(error)
                }
                return id
            }
        }.get()
    }

    /// Waits for the next response to `requestID`, copies its payload to
    /// `payload` (room for `responseSize` bytes); returns whether it is the
    /// last one and its length (≤ `responseSize`).
    @usableFromInline
    package func next(for requestID: UInt64, into payload: UnsafeMutableRawPointer,
              timeout: Duration?) throws(ServiceError) -> (final: Bool, length: Int) {
        if !stash.isEmpty, var queued = stash[requestID], !queued.isEmpty {
            let first = queued.removeFirst()
            stash[requestID] = queued.isEmpty ? nil : queued
            first.bytes.withUnsafeBytes { if $0.count > 0 { payload.copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
            return (first.final, first.bytes.count)
        }
        let slot = RequestEntry.header + responseSize
        return try withUnsafeTemporaryAllocation(byteCount: slot, alignment: 16) { buffer in
            Result { () throws(ServiceError) -> (final: Bool, length: Int) in
                try nextFromQueue(for: requestID, into: payload, slot: buffer, timeout: timeout)
            }
        }.get()
    }

    private func nextFromQueue(for requestID: UInt64, into payload: UnsafeMutableRawPointer, slot buffer: UnsafeMutableRawBufferPointer,
                               timeout: Duration?) throws(ServiceError) -> (final: Bool, length: Int) {
        let end = deadline(after: timeout)
        let slot = buffer.count
        let responseSlot = buffer.baseAddress!
        let responsePayload = responseSlot + ResponseEntry.Offset.payload
        while true {
            let remaining: Duration? = end.map { .nanoseconds(Int64(bitPattern: max(0, $0 &- monotonicNanoseconds()))) }
            let n: Int
            var w = waiter // a local copy, stored back: no access to the port held across the wait
            defer { waiter = w }
            do throws(QueueError) { n = try responses.receive(into: buffer, timeout: remaining, waiter: &w) }
            catch {
                if case .timedOut = error { throw .timedOut(after: timeout) }
                throw .queue(error)
            }
            // Never trust the length field: another process wrote it.
            let length = responseSlot.load(fromByteOffset: ResponseEntry.Offset.length, as: UInt64.self)
            guard n == slot, length <= UInt64(responseSize) else {
                throw .corrupt(service: attachment.name.value, reason: "response slot of \(n) bytes holding \(length)")
            }
            let id = responseSlot.load(fromByteOffset: ResponseEntry.Offset.requestID, as: UInt64.self)
            let final = responseSlot.load(fromByteOffset: ResponseEntry.Offset.flags, as: UInt64.self) & ResponseEntry.finalFlag != 0
            if id == requestID {
                payload.copyMemory(from: responsePayload, byteCount: Int(length))
                return (final, Int(length))
            }
            if id <= local.pointee { // an earlier request's: keep it; not ours at all: drop
                if stash.count >= ClientPort.stashLimit, let oldest = stash.keys.min() { stash[oldest] = nil }
                stash[id, default: []].append((Array(UnsafeRawBufferPointer(start: responsePayload, count: Int(length))), final))
            }
        }
    }
}

/// A server's state and hot path, independent of the request and response types.
@usableFromInline
package final class ServerPort: @unchecked Sendable {
    let attachment: ServiceAttachment
    let requests: MessageQueue
    @usableFromInline package let portID: UInt64
    let slotIndex: Int
    let strategy: WaitStrategy
    /// The receiving thread's waits (adaptive spin budget for the port's life;
    /// `respond`, which may run on several threads, waits per call).
    var waiter: Waiter
    package let requestSize: Int, responseSize: Int
    /// Response queues of clients we answered, by client ID, and the last
    /// one answered (most exchanges answer the same client again). Behind a
    /// mutex: requests may be answered from several threads at once.
    struct ClientCache {
        var clients: [UInt64: (SharedMemorySegment, MessageQueue)] = [:]
        var last: (id: UInt64, queue: MessageQueue)?
    }
    let clientCache = Mutex(ClientCache())
    /// Empty polls since we last looked for slots abandoned by killed processes.
    let emptyPolls: UnsafeMutablePointer<Int>

    let maxClients: Int

    @usableFromInline
    func shortMessage(_ what: String, _ length: Int, _ size: Int) -> ServiceError {
        .corrupt(service: attachment.name.value, reason: "\(what) of \(length) bytes for a type of \(size)")
    }

    init(attachment: ServiceAttachment, requests: MessageQueue, requestSize: Int, responseSize: Int,
         maxClients: Int, strategy: WaitStrategy) throws(ServiceError) {
        self.maxClients = maxClients
        self.attachment = attachment
        self.requests = requests
        self.strategy = strategy
        self.waiter = Waiter(strategy)
        self.requestSize = requestSize
        self.responseSize = responseSize
        portID = UInt64.random(in: 1...UInt64.max)
        slotIndex = try attachment.layout.register(.consumers, portID: portID, nodeHash: attachment.node.hash) { _ in }
        emptyPolls = .allocate(capacity: 1)
        emptyPolls.initialize(to: 0)
    }

    deinit {
        attachment.layout.unregister(.consumers, index: slotIndex, portID: portID)
        emptyPolls.deallocate()
    }

    /// Takes the next request, copies its payload to `payload` (room for
    /// `requestSize` bytes); returns its client and request IDs and its
    /// length (≤ `requestSize`), or nil on timeout when `throwOnTimeout` is
    /// false.
    @usableFromInline
    package func receive(into payload: UnsafeMutableRawPointer, timeout: Duration?,
                 throwOnTimeout: Bool) throws(ServiceError) -> (clientID: UInt64, requestID: UInt64, length: Int)? {
        try withUnsafeTemporaryAllocation(byteCount: RequestEntry.header + requestSize, alignment: 16) { buffer in
            Result { () throws(ServiceError) -> (clientID: UInt64, requestID: UInt64, length: Int)? in
                try receive(slot: buffer, into: payload, timeout: timeout, throwOnTimeout: throwOnTimeout)
            }
        }.get()
    }

    private func receive(slot buffer: UnsafeMutableRawBufferPointer, into payload: UnsafeMutableRawPointer, timeout: Duration?,
                         throwOnTimeout: Bool) throws(ServiceError) -> (clientID: UInt64, requestID: UInt64, length: Int)? {
        let slot = buffer.count
        let requestSlot = buffer.baseAddress!
        let n: Int
        do throws(QueueError) {
            if timeout == .zero {
                guard let got = try requests.tryReceive(into: buffer) else {
                    // A killed client or server can leave the head slot claimed;
                    // the blocking path recovers it, polls do now and then.
                    emptyPolls.pointee &+= 1
                    if emptyPolls.pointee & 1023 == 0 { _ = requests.recoverAbandonedSlots() }
                    throw QueueError.timedOut(.zero) // reported below per `throwOnTimeout`
                }
                n = got
            } else {
                var w = waiter // a local copy, stored back: no access to the port held across the wait
                defer { waiter = w }
                n = try requests.receive(into: buffer, timeout: timeout, waiter: &w)
            }
        } catch {
            if case .timedOut = error {
                if throwOnTimeout { throw .timedOut(after: timeout) }
                return nil
            }
            throw .queue(error)
        }
        // Never trust the length field: another process wrote it.
        let length = requestSlot.load(fromByteOffset: RequestEntry.Offset.length, as: UInt64.self)
        guard n == slot, length <= UInt64(requestSize) else {
            throw .corrupt(service: attachment.name.value, reason: "request slot of \(n) bytes holding \(length)")
        }
        payload.copyMemory(from: requestSlot + RequestEntry.Offset.payload, byteCount: Int(length))
        return (requestSlot.load(fromByteOffset: RequestEntry.Offset.clientID, as: UInt64.self),
                requestSlot.load(fromByteOffset: RequestEntry.Offset.requestID, as: UInt64.self), Int(length))
    }

    /// Sends the response at `payload` (`length` ≤ `responseSize` bytes) to
    /// `clientID`'s queue; the slot is built on this call's stack. Returns
    /// false if that client is gone.
    @usableFromInline
    package func respond(payload: UnsafeRawPointer, length: Int, final: Bool, requestID: UInt64, clientID: UInt64,
                 timeout: Duration?) throws(ServiceError) -> Bool {
        precondition(length >= 0 && length <= responseSize, "response of \(length) bytes, at most \(responseSize)")
        guard let queue = responseQueue(of: clientID) else { return false }
        return try withUnsafeTemporaryAllocation(byteCount: RequestEntry.header + responseSize, alignment: 16) { slot in
            Result { () throws(ServiceError) -> Bool in
                let base = slot.baseAddress!
                base.storeBytes(of: requestID, toByteOffset: ResponseEntry.Offset.requestID, as: UInt64.self)
                base.storeBytes(of: final ? ResponseEntry.finalFlag : 0, toByteOffset: ResponseEntry.Offset.flags, as: UInt64.self)
                base.storeBytes(of: UInt64(length), toByteOffset: ResponseEntry.Offset.length, as: UInt64.self)
                (base + ResponseEntry.Offset.payload).copyMemory(from: payload, byteCount: length)
                let bytes = UnsafeRawBufferPointer(slot)
                do throws(QueueError) {
                    if try queue.trySend(bytes) { return true }
                    // Full: a client that died (or left) no longer reads. Say so
                    // rather than wait for it.
                    guard clientIsRegistered(clientID) else {
                        forget(clientID)
                        return false
                    }
                    var w = waiter // a local copy, stored back: no access to the port held across the wait
                    defer { waiter = w }
                    try queue.send(bytes, timeout: timeout, waiter: &w)
                    return true
                } catch {
                    // A client that stopped reading: forget it.
                    forget(clientID)
                    if case .timedOut = error { throw .timedOut(after: timeout) }
                    throw .queue(error)
                }
            }
        }.get()
    }

    private func clientIsRegistered(_ clientID: UInt64) -> Bool {
        attachment.layout.entries(.producers).contains { $0.portID == clientID && $0.owner.isAlive }
    }

    private func forget(_ clientID: UInt64) {
        clientCache.withLock { cache in
            cache.clients[clientID] = nil
            if cache.last?.id == clientID { cache.last = nil }
        }
    }

    func responseQueue(of clientID: UInt64) -> MessageQueue? {
        if let queue = clientCache.withLock({ cache -> MessageQueue? in
            if let last = cache.last, last.id == clientID { return last.queue }
            if let (_, queue) = cache.clients[clientID] {
                cache.last = (clientID, queue)
                return queue
            }
            return nil
        }) { return queue }
        guard clientIsRegistered(clientID),
              let segment = try? SharedMemorySegment.open(attachment.name.portSegmentName(.responses, clientID),
                                                          kind: ClientPort.kind, timeout: .milliseconds(100)),
              let queue = try? MessageQueue(attaching: segment.data, anchor: segment),
              queue.slotSize == RequestEntry.header + responseSize else { return nil }
        clientCache.withLock { cache in
            if cache.clients.count > 4 * maxClients { cache.clients.removeAll() }
            cache.clients[clientID] = (segment, queue)
            cache.last = (clientID, queue)
        }
        return queue
    }
}
