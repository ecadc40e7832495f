import ShmSystem
@_spi(ShmInternals) import ShmPrimitives

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
    /// Byte offsets in a request slot (the table above).
    enum Offset { static let clientID = 0, requestID = 8, length = 16, payload = 24 }
}

/// A response slot (the table above).
enum ResponseEntry {
    /// Byte offsets in a response slot.
    enum Offset { static let requestID = 0, flags = 8, length = 16, payload = 24 }
    /// `flags` bit 0: the last response to the request.
    static let finalFlag: UInt64 = 1
}
