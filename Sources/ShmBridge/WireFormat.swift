import Shm

/// What the bridge puts on NATS: the subjects, and the headers a sample
/// carries. Other bridges read it; so can any NATS client.
///
/// ```text
/// subject  <prefix>.ps.<service>        samples of publish/subscribe <service>
///          <prefix>.ev.<service>        notifications of event service <service>
///          <prefix>.rr.<service>        requests to request/response <service>; responses go to
///                                       the message's reply subject (the importing bridge's inbox)
///
/// header   Shm-Service     the service name
///          Shm-Type        payload type name; Shm-Type-Size its size, Shm-Type-Align its alignment
///          Shm-Config      the exporting service's configuration, e.g.
///                          "publishers=4,subscribers=8,buffer=16,history=0,loans=4,borrowed=4,overflow=block"
///          Shm-Origin      the bridge that put it on NATS (16 hex digits)
///          Shm-Publisher   the sample's publisher port id (hex); Shm-Sequence its number (decimal)
///          Shm-Timestamp   when the bridge took it (CLOCK_REALTIME, ns)
///          Shm-Length      the sample's bytes
///          Shm-Chunk       "i/n" when the sample is split into n messages (payload beyond the
///                          server's max_payload), Shm-Offset the byte offset of this part
///
/// header   Shm-Service, Shm-Event (the id), Shm-Max-Event (the service's largest id), Shm-Origin
/// (event)
/// header   Shm-Service, Shm-Type (the request type, as above), Shm-Response-Size,
/// (request)  Shm-Origin, Shm-Request (the importing bridge's number for the exchange)
/// header   Shm-Request (echoed), Shm-Final ("1" on the last response of the request),
/// (response) Shm-Error (the exchange failed on the serving side: no server, another type)
/// ```
///
/// A sample larger than the server's `max_payload` (1 MiB by default) goes
/// as consecutive messages on the same subject; NATS keeps one connection's
/// messages on one subject in order, and a receiver missing a part drops
/// the sample (counted as incomplete).
public enum WireFormat {
    public static let defaultPrefix = "swiftshm"

    public static func sampleSubject(prefix: String, service: String) -> String { "\(prefix).ps.\(service)" }
    /// Every sample subject under `prefix`.
    public static func allSamples(prefix: String) -> String { "\(prefix).ps.>" }
    public static func eventSubject(prefix: String, service: String) -> String { "\(prefix).ev.\(service)" }
    public static func allEvents(prefix: String) -> String { "\(prefix).ev.>" }
    public static func requestSubject(prefix: String, service: String) -> String { "\(prefix).rr.\(service)" }
    /// Every request subject under `prefix`.
    public static func allRequests(prefix: String) -> String { "\(prefix).rr.>" }

    /// Room left in a message for headers.
    static let headerAllowance = 4096

    enum Header {
        static let service = "Shm-Service"
        static let type = "Shm-Type", typeSize = "Shm-Type-Size", typeAlignment = "Shm-Type-Align"
        static let config = "Shm-Config"
        static let origin = "Shm-Origin"
        static let publisher = "Shm-Publisher", sequence = "Shm-Sequence", timestamp = "Shm-Timestamp"
        static let length = "Shm-Length", chunk = "Shm-Chunk", offset = "Shm-Offset"
        static let event = "Shm-Event", maxEvent = "Shm-Max-Event"
        static let responseSize = "Shm-Response-Size", request = "Shm-Request", final = "Shm-Final", error = "Shm-Error"
    }

    /// The headers every sample of a service carries.
    static func serviceHeaders(service: String, payload: PayloadType, config: PublishSubscribeConfig,
                               origin: UInt64) -> [(String, String)] {
        [(Header.service, service), (Header.type, payload.name), (Header.typeSize, String(payload.size)),
         (Header.typeAlignment, String(payload.alignment)), (Header.config, encode(config)), (Header.origin, hex(origin))]
    }

    static func hex(_ value: UInt64) -> String { String(value, radix: 16) }

    static func encode(_ config: PublishSubscribeConfig) -> String {
        let overflow = switch config.overflow {
        case .overwriteOldest: "overwrite"
        case .discard: "discard"
        case .block: "block"
        }
        return "publishers=\(config.maxPublishers),subscribers=\(config.maxSubscribers),buffer=\(config.subscriberBufferSize),"
            + "history=\(config.historySize),loans=\(config.maxLoans),borrowed=\(config.maxBorrowed),overflow=\(overflow)"
    }

    /// The configuration in a `Shm-Config` header; nil if it is not one.
    static func decodeConfig(_ text: String) -> PublishSubscribeConfig? {
        var fields: [Substring: Substring] = [:]
        for pair in text.split(separator: ",") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            guard parts.count == 2 else { return nil }
            fields[parts[0]] = parts[1]
        }
        func int(_ key: Substring) -> Int? { fields[key].flatMap { Int($0) }.flatMap { (0...1 << 20).contains($0) ? $0 : nil } }
        guard let publishers = int("publishers"), let subscribers = int("subscribers"), let buffer = int("buffer"),
              let history = int("history"), let loans = int("loans"), let borrowed = int("borrowed") else { return nil }
        let overflow: OverflowPolicy
        switch fields["overflow"] {
        case "overwrite": overflow = .overwriteOldest
        case "discard": overflow = .discard
        case "block": overflow = .block
        default: return nil
        }
        return PublishSubscribeConfig(maxPublishers: publishers, maxSubscribers: subscribers, subscriberBufferSize: buffer,
                                      historySize: history, maxLoans: loans, maxBorrowed: borrowed, overflow: overflow)
    }

    /// The payload type in a message's headers; nil if they do not name one.
    static func payloadType(of message: NatsMessage) -> PayloadType? {
        guard let name = message.header(Header.type), let size = message.header(Header.typeSize).flatMap({ Int($0) }),
              let alignment = message.header(Header.typeAlignment).flatMap({ Int($0) }),
              size >= 1, size <= Int(UInt32.max), alignment >= 1, alignment <= 4096 else { return nil }
        return PayloadType(name: name, size: size, alignment: alignment)
    }
}
