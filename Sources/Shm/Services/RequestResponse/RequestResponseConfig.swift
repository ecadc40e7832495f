import ShmSystem
@_spi(ShmInternals) import ShmPrimitives

/// Configuration of a request/response service, fixed when the service is
/// created and checked by everyone who opens it.
public struct RequestResponseConfig: Hashable, Sendable {
    /// Clients at once (1…1024): slots in the service, blocks in every server's inbox.
    public var maxClients: Int
    /// Servers at once (1…256): slots in the service, blocks in every client's inbox.
    public var maxServers: Int
    /// Per client and server pair: requests queued at the server and
    /// responses queued at the client; also the requests a server may hold
    /// in place, the responses a client may hold, and the requests a client
    /// keeps while no server runs. Pools are sized from it (see
    /// `RequestResponseSizes`): memory in /dev/shm grows with
    /// `queueDepth × (maxServers × requestSize + maxClients × responseSize)`.
    public var queueDepth: Int

    public init(maxClients: Int = 8, maxServers: Int = 2, queueDepth: Int = 16) {
        self.maxClients = maxClients
        self.maxServers = maxServers
        self.queueDepth = queueDepth
    }
}

/// What a request/response chunk's header says (`ChunkPool`: +0 sequence
/// UInt64, +8 length UInt32, +12 next UInt32; payload from +16): requests
/// and responses are written in place in their sender's pool and travel as
/// chunk references, so the IDs ride in the header's `sequence` word.
///
/// ```text
/// request chunk (a client's pool):   sequence = request ID (1, 2, … per client)
/// response chunk (a server's pool):  sequence = bit 63: final response
///                                              bits 0…62: the request ID it answers
/// the client ID: the port that owns the pool the request came from
/// ```
enum RequestResponseWire {
    static let finalBit: UInt64 = 1 << 63

    static func requestSequence(_ id: UInt64) -> UInt64 { id & ~finalBit }

    static func requestID(_ sequence: UInt64) -> UInt64 { sequence & ~finalBit }

    static func responseSequence(_ requestID: UInt64, final: Bool) -> UInt64 {
        (requestID & ~finalBit) | (final ? finalBit : 0)
    }

    /// The request ID a response answers and whether it is the last one.
    static func response(_ sequence: UInt64) -> (requestID: UInt64, final: Bool) {
        (sequence & ~finalBit, sequence & finalBit != 0)
    }
}

/// A request/response service's ports, sized from its configuration:
/// each direction is a zero-copy connection like publish/subscribe's
/// (`.block` overflow: senders wait for room, nothing is dropped).
///
/// - requests: every client's pool holds `maxServers × 2 × queueDepth +
///   queueDepth + 4` chunks of `requestSize` (queued at each server, held
///   by it while it answers, waiting for a server to connect, loaned);
///   every server's inbox has a block per client slot.
/// - responses: every server's pool holds `maxClients × 2 × queueDepth + 4`
///   chunks of `responseSize` (queued at each client, held by it, loaned);
///   every client's inbox has a block per server slot.
///
/// A server may hold `queueDepth` requests in place at once, a client
/// `queueDepth` responses (`.tooManyBorrowed` past that).
///
/// Memory in /dev/shm is reserved when a port is created (`fallocate`): a
/// full /dev/shm is a clear error then, never a SIGBUS later.
struct RequestResponseSizes {
    let request: PayloadType
    let responseSize: Int
    let maxClients: Int, maxServers: Int, queueDepth: Int
    let requests: PublishSubscribeConfig
    let responses: PublishSubscribeConfig
    let deliveryCapacity: Int

    init(_ config: RequestResponseConfig, request: PayloadType, responseSize: Int) {
        self.request = request
        self.responseSize = responseSize
        maxClients = config.maxClients
        maxServers = config.maxServers
        queueDepth = config.queueDepth
        let depth = config.queueDepth
        requests = PublishSubscribeConfig(maxPublishers: config.maxClients, maxSubscribers: config.maxServers,
                                          subscriberBufferSize: depth, historySize: 0, maxLoans: depth + 4, maxBorrowed: depth,
                                          overflow: .block)
        responses = PublishSubscribeConfig(maxPublishers: config.maxServers, maxSubscribers: config.maxClients,
                                           subscriberBufferSize: depth, historySize: 0, maxLoans: 4, maxBorrowed: depth,
                                           overflow: .block)
        deliveryCapacity = IndexQueue.capacity(atLeast: depth)
    }

    /// A receiver's return queues hold every chunk of a sender's pool.
    func returnCapacity(sender: PublishSubscribeConfig) -> Int { IndexQueue.capacity(atLeast: sender.chunksPerPublisher) }
}
