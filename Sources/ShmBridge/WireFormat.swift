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
/// (sample) Shm-Type        <size>;<alignment>;<configuration>;<type name>   the payload type, and the
///                          exporting service's configuration, e.g. "6220800;1;publishers=4,subscribers=8,
///                          buffer=16,history=0,loans=4,borrowed=4,overflow=block;[Swift.UInt8]"
///          Shm-Sample      <origin>;<publisher>;<sequence>;<timestamp>;<length>[;<part>/<parts>;<offset>]
///                          origin: the bridge that put it on NATS, publisher: the sample's publisher
///                          port (both hex); sequence, timestamp (CLOCK_REALTIME ns when the bridge took
///                          it), length (bytes), and for a sample split into parts (beyond the server's
///                          max_payload) this part's number, their count and its byte offset (decimal)
///
/// batch    with `batching` on, samples of one service that are waiting together go as one message:
///          Shm-Service, Shm-Type as above, Shm-Batch "<origin>;<count>", and a payload of
///          <count> entries, each 8-aligned (little-endian):
///            +0 publisher u64, +8 sequence u64, +16 timestamp u64, +24 length u32, +28 zero u32,
///            +32 the sample's bytes, padded with zeros to a multiple of 8
///
/// header   Shm-Service, Shm-Event (the id), Shm-Max-Event (the service's largest id), Shm-Origin
/// (event)
/// header   Shm-Service, Shm-Type (the request type, configuration empty), Shm-Response-Size,
/// (request)  Shm-Origin, Shm-Request (the importing bridge's number for the exchange)
/// header   Shm-Request (echoed), Shm-Final ("1" on the last response of the request),
/// (response) Shm-Error (the exchange failed on the serving side: no server, another type)
/// ```
///
/// Three headers per sample (each costs nats.c an allocation on both
/// sides). A sample larger than the server's `max_payload` (1 MiB by
/// default) goes as consecutive messages on the same subject; NATS keeps
/// one connection's messages on one subject in order, and a receiver
/// missing a part drops the sample (counted as incomplete).
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
        static let service = "Shm-Service", type = "Shm-Type", sample = "Shm-Sample", batch = "Shm-Batch"
        static let origin = "Shm-Origin"
        static let event = "Shm-Event", maxEvent = "Shm-Max-Event"
        static let responseSize = "Shm-Response-Size", request = "Shm-Request", final = "Shm-Final", error = "Shm-Error"
    }

    /// The headers every sample of a service carries (`Shm-Sample` is per sample).
    static func serviceHeaders(service: String, payload: PayloadType, config: PublishSubscribeConfig?) -> [(String, String)] {
        [(Header.service, service), (Header.type, typeHeader(payload, config: config))]
    }

    static func typeHeader(_ payload: PayloadType, config: PublishSubscribeConfig?) -> String {
        "\(payload.size);\(payload.alignment);\(config.map(encode) ?? "");\(payload.name)"
    }

    /// What `Shm-Sample` says about one sample (or one part of it).
    struct SampleInfo: Equatable {
        var origin: UInt64, publisher: UInt64, sequence: UInt64, timestamp: UInt64, length: Int
        var part: (index: Int, count: Int, offset: Int)?

        static func == (a: SampleInfo, b: SampleInfo) -> Bool {
            a.origin == b.origin && a.publisher == b.publisher && a.sequence == b.sequence && a.timestamp == b.timestamp
                && a.length == b.length && a.part?.index == b.part?.index && a.part?.count == b.part?.count
                && a.part?.offset == b.part?.offset
        }

        var encoded: String {
            var text = "\(hex(origin));\(hex(publisher));\(sequence);\(timestamp);\(length)"
            if let part { text += ";\(part.index)/\(part.count);\(part.offset)" }
            return text
        }

        /// Nil unless every field is present and in range (length 1…1 GiB,
        /// parts 2…65536 with index < count, offset ≤ length).
        init?(_ text: String) {
            let fields = text.split(separator: ";", omittingEmptySubsequences: false)
            guard fields.count == 5 || fields.count == 7,
                  let origin = UInt64(fields[0], radix: 16), let publisher = UInt64(fields[1], radix: 16),
                  let sequence = UInt64(fields[2]), let timestamp = UInt64(fields[3]),
                  let length = Int(fields[4]), (1...(1 << 30)).contains(length) else { return nil }
            self.init(origin: origin, publisher: publisher, sequence: sequence, timestamp: timestamp, length: length)
            if fields.count == 7 {
                let pieces = fields[5].split(separator: "/")
                guard pieces.count == 2, let index = Int(pieces[0]), let count = Int(pieces[1]), (2...65536).contains(count),
                      (0..<count).contains(index), let offset = Int(fields[6]), (0...length).contains(offset) else { return nil }
                part = (index, count, offset)
            }
        }

        init(origin: UInt64, publisher: UInt64, sequence: UInt64, timestamp: UInt64, length: Int,
             part: (index: Int, count: Int, offset: Int)? = nil) {
            self.origin = origin
            self.publisher = publisher
            self.sequence = sequence
            self.timestamp = timestamp
            self.length = length
            self.part = part
        }
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

    /// Builds a batch payload (see the layout above), reusing its buffer.
    struct BatchWriter {
        static let entryHeader = 32
        private var buffer: [UInt8] = []
        private(set) var count = 0, payloadBytes = 0

        /// Adds a sample if the batch stays within `limit` bytes; false if it would not.
        mutating func add(publisher: UInt64, sequence: UInt64, timestamp: UInt64, bytes: UnsafeRawBufferPointer, limit: Int) -> Bool {
            let span = Self.entryHeader + (bytes.count + 7) & ~7
            guard buffer.count + span <= limit else { return false }
            let start = buffer.count
            buffer.append(contentsOf: repeatElement(0, count: span))
            buffer.withUnsafeMutableBytes { frame in
                frame.storeBytes(of: publisher.littleEndian, toByteOffset: start, as: UInt64.self)
                frame.storeBytes(of: sequence.littleEndian, toByteOffset: start + 8, as: UInt64.self)
                frame.storeBytes(of: timestamp.littleEndian, toByteOffset: start + 16, as: UInt64.self)
                frame.storeBytes(of: UInt32(bytes.count).littleEndian, toByteOffset: start + 24, as: UInt32.self)
                if let source = bytes.baseAddress, bytes.count > 0 {
                    (frame.baseAddress! + start + Self.entryHeader).copyMemory(from: source, byteCount: bytes.count)
                }
            }
            count += 1
            payloadBytes += bytes.count
            return true
        }

        func withFrame<R>(_ body: (UnsafeRawBufferPointer) throws(BridgeError) -> R) throws(BridgeError) -> R {
            try buffer.withUnsafeBytes { frame in Result { () throws(BridgeError) -> R in try body(frame) } }.get()
        }

        mutating func reset() {
            buffer.removeAll(keepingCapacity: true)
            count = 0
            payloadBytes = 0
        }
    }

    /// The entries of a batch payload, or nil if it is not exactly `count`
    /// well-formed entries (lengths 1…1 GiB, within the payload).
    static func batchEntries(_ frame: UnsafeRawBufferPointer, count: Int)
        -> [(publisher: UInt64, sequence: UInt64, timestamp: UInt64, bytes: UnsafeRawBufferPointer)]? {
        guard (1...65536).contains(count) else { return nil }
        var entries: [(UInt64, UInt64, UInt64, UnsafeRawBufferPointer)] = []
        entries.reserveCapacity(count)
        var offset = 0
        for _ in 0..<count {
            guard frame.count - offset >= BatchWriter.entryHeader else { return nil }
            let length = Int(UInt32(littleEndian: frame.loadUnaligned(fromByteOffset: offset + 24, as: UInt32.self)))
            guard length >= 1, length <= frame.count - offset - BatchWriter.entryHeader else { return nil }
            entries.append((UInt64(littleEndian: frame.loadUnaligned(fromByteOffset: offset, as: UInt64.self)),
                            UInt64(littleEndian: frame.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self)),
                            UInt64(littleEndian: frame.loadUnaligned(fromByteOffset: offset + 16, as: UInt64.self)),
                            UnsafeRawBufferPointer(rebasing: frame[(offset + BatchWriter.entryHeader)..<(offset + BatchWriter.entryHeader + length)])))
            offset += BatchWriter.entryHeader + (length + 7) & ~7
        }
        guard offset == frame.count else { return nil }
        return entries
    }

    /// The payload type and configuration in a `Shm-Type` header; nil if it
    /// does not name a type (size 0…4 GiB, alignment 1…4096; the
    /// configuration is nil when empty or not one).
    static func decodeType(_ text: String) -> (PayloadType, PublishSubscribeConfig?)? {
        let fields = text.split(separator: ";", maxSplits: 3, omittingEmptySubsequences: false)
        guard fields.count == 4, let size = Int(fields[0]), let alignment = Int(fields[1]), !fields[3].isEmpty,
              size >= 0, size <= Int(UInt32.max), alignment >= 1, alignment <= 4096 else { return nil }
        return (PayloadType(name: String(fields[3]), size: size, alignment: alignment), decodeConfig(String(fields[2])))
    }
}
