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
            var writer = HeaderText.Writer()
            write(into: &writer)
            return writer.text
        }

        /// Appends the header value (see the layout above) to `writer`.
        func write(into writer: inout HeaderText.Writer) {
            writer.hex(origin)
            writer.separator()
            writer.hex(publisher)
            writer.separator()
            writer.decimal(sequence)
            writer.separator()
            writer.decimal(timestamp)
            writer.separator()
            writer.decimal(UInt64(length))
            if let part {
                writer.separator()
                writer.decimal(UInt64(part.index))
                writer.separator(UInt8(ascii: "/"))
                writer.decimal(UInt64(part.count))
                writer.separator()
                writer.decimal(UInt64(part.offset))
            }
        }

        /// Nil unless every field is present and in range (length 0…1 GiB —
        /// a slice may be empty — parts 2…65536 with index < count, offset ≤ length).
        init?(_ text: String) {
            var text = text
            guard let info = text.withUTF8({ SampleInfo(bytes: $0) }) else { return nil }
            self = info
        }

        /// `init(_:)` over the header's bytes.
        init?(bytes: UnsafeBufferPointer<UInt8>) {
            let semicolon = UInt8(ascii: ";")
            var scanner = HeaderText.Scanner(bytes)
            guard let origin = scanner.next(semicolon).flatMap(HeaderText.hex),
                  let publisher = scanner.next(semicolon).flatMap(HeaderText.hex),
                  let sequence = scanner.next(semicolon).flatMap(HeaderText.decimal),
                  let timestamp = scanner.next(semicolon).flatMap(HeaderText.decimal),
                  let length = scanner.next(semicolon).flatMap(HeaderText.decimal), length <= 1 << 30 else { return nil }
            self.init(origin: origin, publisher: publisher, sequence: sequence, timestamp: timestamp, length: Int(length))
            guard !scanner.isAtEnd else { return }
            guard let index = scanner.next(UInt8(ascii: "/")).flatMap(HeaderText.decimal),
                  let count = scanner.next(semicolon).flatMap(HeaderText.decimal), (2...65536).contains(count), index < count,
                  let offset = scanner.rest().flatMap(HeaderText.decimal), offset <= length else { return nil }
            part = (Int(index), Int(count), Int(offset))
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
        var text = text
        return text.withUTF8 { decodeConfig(bytes: $0) }
    }

    /// `decodeConfig(_:)` over the header's bytes: the six numbers (0…2^20;
    /// a key given twice: the last wins) and a known overflow policy, in any
    /// order; keys it does not know are skipped (a newer exporter).
    static func decodeConfig(bytes: UnsafeBufferPointer<UInt8>) -> PublishSubscribeConfig? {
        let keys: [StaticString] = ["publishers", "subscribers", "buffer", "history", "loans", "borrowed"]
        var numbers = [Int?](repeating: nil, count: keys.count)
        var overflow: OverflowPolicy?
        var pairs = HeaderText.Scanner(bytes)
        while let pair = pairs.next(UInt8(ascii: ",")) {
            if pair.isEmpty { continue } // ",," or a trailing comma
            var halves = HeaderText.Scanner(pair)
            guard let key = halves.next(UInt8(ascii: "=")), let value = halves.rest() else { return nil }
            if HeaderText.equals(key, "overflow") {
                if HeaderText.equals(value, "overwrite") { overflow = .overwriteOldest }
                else if HeaderText.equals(value, "discard") { overflow = .discard }
                else if HeaderText.equals(value, "block") { overflow = .block }
                else { return nil }
                continue
            }
            guard let index = keys.firstIndex(where: { HeaderText.equals(key, $0) }) else { continue } // a newer field
            guard let number = HeaderText.decimal(value), number <= 1 << 20 else { return nil }
            numbers[index] = Int(number)
        }
        guard let overflow, let publishers = numbers[0], let subscribers = numbers[1], let buffer = numbers[2],
              let history = numbers[3], let loans = numbers[4], let borrowed = numbers[5] else { return nil }
        return PublishSubscribeConfig(maxPublishers: publishers, maxSubscribers: subscribers, subscriberBufferSize: buffer,
                                      historySize: history, maxLoans: loans, maxBorrowed: borrowed, overflow: overflow)
    }

    /// Builds a batch payload (see the layout above), reusing its buffer.
    struct BatchWriter {
        static let entryHeader = 32
        /// Where an entry's fields are, from its start (see the layout above).
        enum Offset {
            static let publisher = 0, sequence = 8, timestamp = 16, length = 24
        }
        private var buffer: [UInt8] = []
        private(set) var count = 0, payloadBytes = 0

        /// Adds a sample if the batch stays within `limit` bytes; false if it would not.
        mutating func add(publisher: UInt64, sequence: UInt64, timestamp: UInt64, bytes: UnsafeRawBufferPointer, limit: Int) -> Bool {
            let span = Self.entryHeader + (bytes.count + 7) & ~7
            guard buffer.count + span <= limit else { return false }
            if buffer.capacity < limit { buffer.reserveCapacity(limit) }
            // The header, the bytes, the padding: each byte written once.
            var header: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
            withUnsafeMutableBytes(of: &header) { fields in
                fields.storeBytes(of: publisher.littleEndian, toByteOffset: Offset.publisher, as: UInt64.self)
                fields.storeBytes(of: sequence.littleEndian, toByteOffset: Offset.sequence, as: UInt64.self)
                fields.storeBytes(of: timestamp.littleEndian, toByteOffset: Offset.timestamp, as: UInt64.self)
                fields.storeBytes(of: UInt32(bytes.count).littleEndian, toByteOffset: Offset.length, as: UInt32.self)
            }
            withUnsafeBytes(of: header) { buffer.append(contentsOf: $0) }
            buffer.append(contentsOf: bytes)
            let padding = span - Self.entryHeader - bytes.count
            if padding > 0 { withUnsafeBytes(of: UInt64(0)) { buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: $0[..<padding])) } }
            count += 1
            payloadBytes += bytes.count
            return true
        }

        /// Calls `body` with the first sample added (nil when empty).
        func withFirst<R>(_ body: (_ publisher: UInt64, _ sequence: UInt64, _ timestamp: UInt64,
                                   _ bytes: UnsafeRawBufferPointer) -> R) -> R? {
            guard count > 0 else { return nil }
            return buffer.withUnsafeBytes { frame in
                let entry = WireFormat.batchEntry(frame, at: 0)!
                return body(entry.publisher, entry.sequence, entry.timestamp, entry.bytes)
            }
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

    /// The entry of a batch payload at `offset`, or nil if it does not fit
    /// (length 1…the bytes left).
    static func batchEntry(_ frame: UnsafeRawBufferPointer, at offset: Int)
        -> (publisher: UInt64, sequence: UInt64, timestamp: UInt64, bytes: UnsafeRawBufferPointer)? {
        typealias Offset = BatchWriter.Offset
        guard offset >= 0, frame.count - offset >= BatchWriter.entryHeader else { return nil }
        let length = Int(UInt32(littleEndian: frame.loadUnaligned(fromByteOffset: offset + Offset.length, as: UInt32.self)))
        guard length >= 1, length <= frame.count - offset - BatchWriter.entryHeader else { return nil }
        let start = offset + BatchWriter.entryHeader
        return (UInt64(littleEndian: frame.loadUnaligned(fromByteOffset: offset + Offset.publisher, as: UInt64.self)),
                UInt64(littleEndian: frame.loadUnaligned(fromByteOffset: offset + Offset.sequence, as: UInt64.self)),
                UInt64(littleEndian: frame.loadUnaligned(fromByteOffset: offset + Offset.timestamp, as: UInt64.self)),
                UnsafeRawBufferPointer(rebasing: frame[start..<(start + length)]))
    }

    /// The entries of a batch payload, or nil if it is not exactly `count`
    /// well-formed entries (lengths 1…1 GiB, within the payload).
    static func batchEntries(_ frame: UnsafeRawBufferPointer, count: Int)
        -> [(publisher: UInt64, sequence: UInt64, timestamp: UInt64, bytes: UnsafeRawBufferPointer)]? {
        guard (1...65536).contains(count) else { return nil }
        var entries: [(publisher: UInt64, sequence: UInt64, timestamp: UInt64, bytes: UnsafeRawBufferPointer)] = []
        entries.reserveCapacity(count)
        var offset = 0
        for _ in 0..<count {
            guard let entry = batchEntry(frame, at: offset) else { return nil }
            entries.append(entry)
            offset += BatchWriter.entryHeader + (entry.bytes.count + 7) & ~7
        }
        guard offset == frame.count else { return nil }
        return entries
    }

    /// The payload type and configuration in a `Shm-Type` header; nil if it
    /// does not name a type (size 0…4 GiB, alignment 1…4096; the
    /// configuration is nil when empty or not one).
    static func decodeType(_ text: String) -> (PayloadType, PublishSubscribeConfig?)? {
        var text = text
        return text.withUTF8 { decodeType(bytes: $0) }
    }

    /// `decodeType(_:)` over the header's bytes.
    static func decodeType(bytes: UnsafeBufferPointer<UInt8>) -> (PayloadType, PublishSubscribeConfig?)? {
        let semicolon = UInt8(ascii: ";")
        var fields = HeaderText.Scanner(bytes)
        guard let size = fields.next(semicolon).flatMap(HeaderText.decimal), size <= UInt64(UInt32.max),
              let alignment = fields.next(semicolon).flatMap(HeaderText.decimal), (1...4096).contains(alignment),
              let config = fields.next(semicolon), let name = fields.rest(), !name.isEmpty else { return nil }
        return (PayloadType(name: String(decoding: name, as: UTF8.self), size: Int(size), alignment: Int(alignment)),
                config.isEmpty ? nil : decodeConfig(bytes: config))
    }

    /// The `Shm-Batch` header: "<origin hex>;<count>".
    static func batchHeader(bytes: UnsafeBufferPointer<UInt8>) -> (origin: UInt64, count: Int)? {
        var fields = HeaderText.Scanner(bytes)
        guard let origin = fields.next(UInt8(ascii: ";")).flatMap(HeaderText.hex),
              let count = fields.rest().flatMap(HeaderText.decimal), count <= 1 << 20 else { return nil }
        return (origin, Int(count))
    }
}
