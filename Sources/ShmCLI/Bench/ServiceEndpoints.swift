import ArgumentParser
import Shm

/// How a service benchmark's receivers wait.
enum BenchWait: String, CaseIterable, ExpressibleByArgument, Sendable {
    /// Poll `tryReceive()` in a loop (as the iceoryx2 benchmarks do).
    case spin
    /// `receive(timeout:)` with the default spin-then-park strategy.
    case `default`
    /// `receive(timeout:)` parking on the futex at once.
    case block

    var strategy: WaitStrategy {
        switch self {
        case .spin: .busySpin
        case .default: .default
        case .block: .block
        }
    }
}

/// What both sides of a service benchmark must agree on.
struct ServiceBenchParameters: Sendable {
    var subscribers = 1
    var wait = BenchWait.spin
    /// Streaming (throughput) rather than ping-pong: deeper buffers.
    var streaming = false
    /// Request/response: the copying calls (`send(_:)`, `receive()`,
    /// `respond(_:)`, `response()`) instead of loans read in place.
    var copy = false
    /// How publishers' pools get memory (`--pool`).
    var pool = "automatic"
    /// The latency cells' overflow policy (`--overflow`; throughput always blocks).
    var overflow = OverflowPolicy.overwriteOldest

    var childArguments: [String] {
        ["--subscribers", String(subscribers), "--wait", wait.rawValue, "--pool", pool, "--overflow", overflowName(overflow)]
            + (streaming ? ["--streaming"] : []) + (copy ? ["--copy"] : [])
    }

    var allocation: PoolAllocation { (try? parsePoolAllocation(pool)) ?? .automatic }
}

// MARK: - Publish/subscribe

/// Publish/subscribe both ways. Service `<name>.a`: the parent publishes,
/// the peer has `subscribers` subscribers. Service `<name>.b`: the peer
/// publishes, the parent subscribes. Zero-copy: each sample is loaned in the
/// publisher's pool, only its 8-byte sequence number is written, and it is
/// read in place.
///
/// The peer returns a sequence number from `receive()` once *every* one of
/// its subscribers has it, so a ping-pong round measures delivery to all N.
final class PubSubEndpoint: BenchEndpoint {
    let size: Int
    let parameters: ServiceBenchParameters
    let node: Node
    let outbound: PublishSubscribeService<UInt8>
    let inbound: PublishSubscribeService<UInt8>
    let publisher: Publisher<UInt8>
    let subscribers: [Subscriber<UInt8>]

    /// Identical on both sides: the defaults for latency, deep buffers to stream.
    static func config(_ parameters: ServiceBenchParameters, size: Int) -> PublishSubscribeConfig {
        // Latency: the library's defaults (a buffer of 16, overwrite oldest).
        // A buffer of 2 (used until pools could grow: it kept reserved pools
        // of 4 MiB samples small) makes the publisher re-read each
        // subscriber's head line on every other send — a cache-line transfer
        // the default buffer pays once per ~15 sends (BENCHMARKS.md).
        // Throughput: deep buffers and `.block`, so nothing is lost.
        guard parameters.streaming else {
            return PublishSubscribeConfig(maxPublishers: 1, maxSubscribers: parameters.subscribers, historySize: 0,
                                          maxLoans: 1, maxBorrowed: 1, overflow: parameters.overflow)
        }
        let buffer = max(2, min(256, (256 << 20) / max(1, size * parameters.subscribers)))
        return PublishSubscribeConfig(maxPublishers: 1, maxSubscribers: parameters.subscribers, subscriberBufferSize: buffer,
                                      historySize: 0, maxLoans: 1, maxBorrowed: 1, overflow: .block)
    }

    private init(size: Int, parameters: ServiceBenchParameters, name: String, parent: Bool) throws {
        self.size = size
        self.parameters = parameters
        node = try Node(name: parent ? "bench" : "bench-peer")
        let config = Self.config(parameters, size: size)
        let a = try node.publishSubscribe(name + ".a", slicesOf: UInt8.self, maxLength: size, config: config)
        let b = try node.publishSubscribe(name + ".b", slicesOf: UInt8.self, maxLength: size, config: config)
        outbound = parent ? a : b
        inbound = parent ? b : a
        publisher = try outbound.publisher(allocation: parameters.allocation)
        publisher.sendTimeout = benchReceiveTimeout
        let count = parent ? 1 : parameters.subscribers
        let service = parent ? b : a
        subscribers = try (0..<count).map { _ in try service.subscriber(waitStrategy: parameters.wait.strategy) }
    }

    /// The parent's side; the session waits for the peer's subscribers after spawning it.
    static func parentSession(name: String, size: Int, parameters: ServiceBenchParameters) throws -> BenchSession {
        let endpoint = try PubSubEndpoint(size: size, parameters: parameters, name: name, parent: true)
        let session = BenchSession(endpoint: endpoint,
                                   childArguments: ["--mechanism", BenchMechanism.pubsub.rawValue, "--size", String(size),
                                                    "--name", name] + parameters.childArguments)
        session.afterSpawn = {
            guard try endpoint.publisher.waitForSubscribers(parameters.subscribers, timeout: .seconds(20)) else {
                throw BenchFailure("the peer's \(parameters.subscribers) subscriber(s) did not connect")
            }
        }
        return session
    }

    /// The peer's side: its subscribers exist once this returns; it waits for the parent's.
    convenience init(child name: String, size: Int, parameters: ServiceBenchParameters) throws {
        try self.init(size: size, parameters: parameters, name: name, parent: false)
        guard try publisher.waitForSubscribers(1, timeout: .seconds(20)) else { throw BenchFailure("the parent's subscriber is gone") }
    }

    func send(_ seq: UInt64) throws {
        let sample = try publisher.loanUninitialized(count: size)
        UnsafeMutableRawPointer(sample.unsafeBuffer.baseAddress!).storeBytes(of: seq, as: UInt64.self)
        _ = try sample.assumeInitialized().send()
    }

    func receive() throws -> UInt64 {
        let seq = try next(from: subscribers[0])
        for subscriber in subscribers.dropFirst() {
            let other = try next(from: subscriber)
            guard other == seq else { throw BenchFailure("subscribers disagree: \(seq) and \(other)") }
        }
        return seq
    }

    /// The next sequence number from one subscriber, waiting as configured.
    func next(from subscriber: Subscriber<UInt8>) throws -> UInt64 {
        guard parameters.wait == .spin else {
            return try subscriber.receive(timeout: benchReceiveTimeout).unsafeBytes.load(as: UInt64.self)
        }
        var spins: UInt32 = 0
        var deadline: UInt64 = 0
        while true {
            if let sample = try subscriber.tryReceive() { return sample.unsafeBytes.load(as: UInt64.self) }
            spins &+= 1
            if spins & 0xfff == 0 {
                let now = monotonicNanoseconds()
                if deadline == 0 { deadline = now + benchReceiveTimeout.nanoseconds } else if now > deadline { throw BenchFailure("peer silent") }
            }
        }
    }

    /// Streams `count` samples as fast as the subscribers take them
    /// (`.block` overflow: none is lost); returns nanoseconds until the peer
    /// acknowledged the last one.
    func stream(count: Int) throws -> UInt64 {
        let start = monotonicNanoseconds()
        for seq in 0..<UInt64(count) { try send(seq) }
        guard try next(from: subscribers[0]) == .max else { throw BenchFailure("bad acknowledgement") }
        return monotonicNanoseconds() - start
    }

    /// The peer's side of `stream`: drains every subscriber round robin,
    /// checking each one's sequence numbers, then acknowledges.
    func drain(count: Int) throws {
        var expected = [UInt64](repeating: 0, count: subscribers.count)
        var remaining = subscribers.count
        let deadline = monotonicNanoseconds() + 6 * benchReceiveTimeout.nanoseconds
        var idle: UInt32 = 0
        while remaining > 0 {
            var progressed = false
            for (i, subscriber) in subscribers.enumerated() where expected[i] < UInt64(count) {
                while expected[i] < UInt64(count), let sample = try subscriber.tryReceive() {
                    let seq = sample.unsafeBytes.load(as: UInt64.self)
                    guard seq == expected[i] else { throw BenchFailure("subscriber \(i): expected \(expected[i]), got \(seq)") }
                    expected[i] += 1
                    progressed = true
                }
                if expected[i] == UInt64(count) { remaining -= 1 }
            }
            if !progressed {
                idle &+= 1
                if idle & 0xfff == 0, monotonicNanoseconds() > deadline { throw BenchFailure("publisher stalled at \(expected)") }
            }
        }
        try send(.max)
    }
}

// MARK: - Request/response

/// Fixed-size request and response of `8 * (words + 1)` bytes; the first
/// word carries the sequence number.
struct BenchMessage<let words: Int>: BitwiseCopyable {
    var seq: UInt64
    var rest: InlineArray<words, UInt64>

    init(_ seq: UInt64) {
        self.seq = seq
        rest = .init(repeating: 0x5a5a_5a5a_5a5a_5a5a)
    }
}

protocol BenchMessageType: BitwiseCopyable {
    init(_ seq: UInt64)
    var seq: UInt64 { get }
}

extension BenchMessage: BenchMessageType {}

/// Message sizes `shm bench rr` supports.
let requestResponseSizes = [8, 64, 512, 4096, 65536, 1 << 20, 4 << 20]
/// The largest size the copying calls are measured at (typed messages,
/// values on the stack).
let requestResponseCopyLimit = 4096

/// Calls `body` with the typed message of `size` bytes (copying calls).
func withBenchMessageType<R>(size: Int, _ body: (any BenchMessageType.Type) throws -> R) throws -> R {
    switch size {
    case 8: try body(BenchMessage<0>.self)
    case 64: try body(BenchMessage<7>.self)
    case 512: try body(BenchMessage<63>.self)
    case 4096: try body(BenchMessage<511>.self)
    default: throw BenchFailure("the copying calls are measured at 8, 64, 512 and 4096 bytes")
    }
}

/// One request/response service `<name>`, zero-copy (as pub/sub's
/// benchmark): the parent is the client, the peer the server. Each request
/// and response is loaned in its sender's pool, only its first word (the
/// sequence number) written, and read in place; the server answers with
/// the same number. Over the byte-sized ports that typed services, C and
/// Python share (the typed zero-copy calls are inlined shells over them).
final class ZeroCopyRequestResponseEndpoint: BenchEndpoint {
    let size: Int
    let node: Node
    let service: RawRequestResponseService
    let client: ClientPort?
    let server: ServerPort?
    /// Requests sent whose response is still to come (client), oldest first.
    var pending: [UInt64] = []
    var pendingHead = 0
    /// The request being answered (server), in place.
    var active: RequestDelivery?

    init(name: String, size: Int, parent: Bool, wait: BenchWait) throws {
        self.size = size
        node = try Node(name: parent ? "bench" : "bench-peer")
        service = try RawRequestResponseService(node: node, name: ServiceName(name),
                                                request: PayloadType(name: "bench \(size) B", size: size, alignment: 8),
                                                responseSize: size, config: requestResponseBenchConfig(size: size), mode: .openOrCreate)
        client = parent ? try service.clientPort(waitStrategy: wait.strategy) : nil
        server = parent ? nil : try service.serverPort(waitStrategy: wait.strategy)
        pending.reserveCapacity(128)
    }

    func send(_ seq: UInt64) throws {
        if let client {
            let chunk = try client.loanRequest()
            client.requestPayload(chunk).storeBytes(of: seq, as: UInt64.self)
            pending.append(try client.send(chunk: chunk, length: size, timeout: benchReceiveTimeout))
        } else if let server, let request = active {
            active = nil
            let chunk = try server.loanResponse()
            server.responsePayload(chunk).storeBytes(of: seq, as: UInt64.self)
            _ = try server.send(chunk: chunk, length: size, final: true, requestID: request.requestID, clientID: request.clientID,
                                timeout: benchReceiveTimeout)
            request.release()
        } else if seq != .max {
            throw BenchFailure("no request to answer")
        }
    }

    func receive() throws -> UInt64 {
        if let client {
            guard pendingHead < pending.count else { throw BenchFailure("no request outstanding") }
            let response = try client.receive(for: pending[pendingHead], timeout: benchReceiveTimeout)
            let seq = response.address.load(as: UInt64.self)
            response.release()
            pendingHead += 1
            if pendingHead == pending.count { pending.removeAll(keepingCapacity: true); pendingHead = 0 }
            return seq
        }
        let request = try server!.receive(timeout: benchReceiveTimeout)
        active = request
        return request.address.load(as: UInt64.self)
    }

    func stream(count: Int, window: Int) throws -> UInt64 { try streamRequests(self, count: count, window: window) }
}

/// Identical on both sides: queues at least as deep as the default (16),
/// deeper for small messages (up to 64, to pipeline). Pools grow with what
/// is in flight, so a deep queue of 4 MiB messages costs only what a
/// window fills (a queue of 4 made each send re-read the receiver's head).
func requestResponseBenchConfig(size: Int) -> RequestResponseConfig {
    RequestResponseConfig(maxClients: 1, maxServers: 1, queueDepth: max(16, min(64, (16 << 20) / max(1, size))))
}

/// Pipelined requests: keeps up to `window` outstanding; returns
/// nanoseconds until the last response arrived.
/// At most the service's queue depth: a client that sends more without
/// reading responses waits for room in the server's queue while the server
/// waits for room in the client's (until the send timeout).
func streamRequests(_ endpoint: some BenchEndpoint, count: Int, window requested: Int) throws -> UInt64 {
    let window = min(requested, requestResponseBenchConfig(size: endpoint.size).queueDepth)
    let start = monotonicNanoseconds()
    var sent: UInt64 = 0, received: UInt64 = 0
    while received < UInt64(count) {
        while sent < UInt64(count) && sent - received < UInt64(window) {
            try endpoint.send(sent)
            sent += 1
        }
        let seq = try endpoint.receive()
        guard seq == received else { throw BenchFailure("expected response \(received), got \(seq)") }
        received += 1
    }
    return monotonicNanoseconds() - start
}

/// The copying calls (`--copy`): typed messages copied into loans by
/// `send(_:)` and `respond(_:)`, out of them by `receive()` and `response()`.
final class RequestResponseEndpoint<Message: BenchMessageType>: BenchEndpoint {
    let size = MemoryLayout<Message>.size
    let node: Node
    let service: RequestResponseService<Message, Message>
    let client: Client<Message, Message>?
    let server: Server<Message, Message>?
    /// Requests sent whose response is still to come (client), oldest first.
    var pending: [PendingResponse<Message, Message>] = []
    var pendingHead = 0
    /// The request being answered (server).
    var active: ActiveRequest<Message, Message>?

    init(name: String, parent: Bool, wait: BenchWait) throws {
        node = try Node(name: parent ? "bench" : "bench-peer")
        service = try node.requestResponse(name, request: Message.self, response: Message.self,
                                           config: requestResponseBenchConfig(size: MemoryLayout<Message>.size))
        client = parent ? try service.client(waitStrategy: wait.strategy) : nil
        server = parent ? nil : try service.server(waitStrategy: wait.strategy)
    }

    // Specialized for the bench's sizes: reached through `any BenchEndpoint`,
    // the generic code would look up metadata for every message.
    @_specialize(where Message == BenchMessage<0>)
    @_specialize(where Message == BenchMessage<7>)
    @_specialize(where Message == BenchMessage<63>)
    @_specialize(where Message == BenchMessage<511>)
    func send(_ seq: UInt64) throws {
        if let client {
            pending.append(try client.send(Message(seq), timeout: benchReceiveTimeout))
        } else if let active {
            try active.respond(Message(seq), timeout: benchReceiveTimeout)
            self.active = nil
        } else if seq != .max {
            throw BenchFailure("no request to answer")
        }
    }

    @_specialize(where Message == BenchMessage<0>)
    @_specialize(where Message == BenchMessage<7>)
    @_specialize(where Message == BenchMessage<63>)
    @_specialize(where Message == BenchMessage<511>)
    func receive() throws -> UInt64 {
        if client != nil {
            guard pendingHead < pending.count else { throw BenchFailure("no request outstanding") }
            let response = try pending[pendingHead].response(timeout: benchReceiveTimeout)
            pendingHead += 1
            if pendingHead == pending.count { pending.removeAll(keepingCapacity: true); pendingHead = 0 }
            return response.seq
        }
        let request = try server!.receive(timeout: benchReceiveTimeout)
        active = request
        return request.request.seq
    }

    func stream(count: Int, window: Int) throws -> UInt64 { try streamRequests(self, count: count, window: window) }
}

/// Type-erased access to a request/response endpoint's streaming.
protocol RequestStreaming: BenchEndpoint {
    func stream(count: Int, window: Int) throws -> UInt64
}

extension RequestResponseEndpoint: RequestStreaming {}
extension ZeroCopyRequestResponseEndpoint: RequestStreaming {}

func requestResponseParentSession(name: String, size: Int, parameters: ServiceBenchParameters) throws -> BenchSession {
    let childArguments = ["--mechanism", BenchMechanism.requestResponse.rawValue, "--size", String(size), "--name", name]
        + parameters.childArguments
    guard parameters.copy else {
        return BenchSession(endpoint: try ZeroCopyRequestResponseEndpoint(name: name, size: size, parent: true, wait: parameters.wait),
                            childArguments: childArguments)
    }
    return try withBenchMessageType(size: size) { type in
        func make<M: BenchMessageType>(_: M.Type) throws -> BenchSession {
            BenchSession(endpoint: try RequestResponseEndpoint<M>(name: name, parent: true, wait: parameters.wait),
                         childArguments: childArguments)
        }
        return try make(type)
    }
}

func requestResponseChild(name: String, size: Int, parameters: ServiceBenchParameters) throws -> any BenchEndpoint {
    guard parameters.copy else { return try ZeroCopyRequestResponseEndpoint(name: name, size: size, parent: false, wait: parameters.wait) }
    return try withBenchMessageType(size: size) { type in
        func make<M: BenchMessageType>(_: M.Type) throws -> any BenchEndpoint {
            try RequestResponseEndpoint<M>(name: name, parent: false, wait: parameters.wait)
        }
        return try make(type)
    }
}

/// `--overflow overwrite|discard|block` of the service benchmarks.
func parseOverflow(_ text: String) throws -> OverflowPolicy {
    switch text {
    case "overwrite": return .overwriteOldest
    case "discard": return .discard
    case "block": return .block
    default: throw ValidationError("--overflow is overwrite, discard or block, not '\(text)'")
    }
}

func overflowName(_ policy: OverflowPolicy) -> String {
    switch policy {
    case .overwriteOldest: "overwrite"
    case .discard: "discard"
    case .block: "block"
    }
}
