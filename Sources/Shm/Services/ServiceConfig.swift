import ShmSystem

/// What travels on a service: a fixed-size trivially copyable type, or byte
/// slices up to a maximum length. Two processes may talk only if they agree.
public struct PayloadType: Hashable, Sendable, CustomStringConvertible {
    /// The type's name (`String(reflecting:)`), in brackets for slices
    /// (`[Swift.UInt8]`).
    public let name: String
    /// Bytes of one value, or the maximum slice length.
    public let size: Int
    public let alignment: Int

    /// The payload type of `T` (its name, size and alignment).
    public static func of<T: BitwiseCopyable>(_ type: T.Type) -> PayloadType {
        PayloadType(name: String(reflecting: T.self), size: MemoryLayout<T>.size, alignment: MemoryLayout<T>.alignment)
    }

    /// The name of the payload type of byte slices (`slicesOf: UInt8.self`).
    public static let byteSliceName = "[Swift.UInt8]"

    public init(name: String, size: Int, alignment: Int) {
        self.name = name
        self.size = size
        self.alignment = alignment
    }

    public var description: String {
        name == Self.byteSliceName ? "bytes (up to \(size))" : "\(name) (\(size) bytes, alignment \(alignment))"
    }
}

/// What happens when a subscriber's buffer is full.
public enum OverflowPolicy: UInt32, Sendable, CustomStringConvertible {
    /// The oldest undelivered sample is dropped for that subscriber.
    case overwriteOldest = 1
    /// The publisher waits (up to its send timeout) for room.
    case block = 2
    /// The new sample is not delivered to that subscriber.
    case discard = 3

    public var description: String {
        switch self {
        case .overwriteOldest: "overwrite oldest"
        case .block: "block publisher"
        case .discard: "discard newest"
        }
    }
}

/// The static configuration of a publish/subscribe service, fixed when the
/// service is created and checked by everyone who opens it.
public struct PublishSubscribeConfig: Hashable, Sendable {
    public var maxPublishers: Int
    public var maxSubscribers: Int
    /// Samples a subscriber's buffer holds per publisher before the overflow policy applies.
    public var subscriberBufferSize: Int
    /// Samples a late-joining subscriber receives from each publisher.
    public var historySize: Int
    /// Samples a publisher may have loaned (not yet sent) at once.
    public var maxLoans: Int
    /// Samples a subscriber may hold (received, not yet released) at once.
    public var maxBorrowed: Int
    public var overflow: OverflowPolicy

    public init(maxPublishers: Int = 4, maxSubscribers: Int = 8, subscriberBufferSize: Int = 16, historySize: Int = 0,
                maxLoans: Int = 4, maxBorrowed: Int = 4, overflow: OverflowPolicy = .overwriteOldest) {
        self.maxPublishers = maxPublishers
        self.maxSubscribers = maxSubscribers
        self.subscriberBufferSize = subscriberBufferSize
        self.historySize = historySize
        self.maxLoans = maxLoans
        self.maxBorrowed = maxBorrowed
        self.overflow = overflow
    }

    func validate() throws(ServiceError) {
        func check(_ value: Int, _ name: String, _ range: ClosedRange<Int>) throws(ServiceError) {
            guard range.contains(value) else { throw .invalidConfiguration("\(name) \(value) must be \(range.lowerBound)…\(range.upperBound)") }
        }
        try check(maxPublishers, "maxPublishers", 1...64)
        try check(maxSubscribers, "maxSubscribers", 1...256)
        try check(subscriberBufferSize, "subscriberBufferSize", 1...65536)
        try check(historySize, "historySize", 0...65536)
        try check(maxLoans, "maxLoans", 1...4096)
        try check(maxBorrowed, "maxBorrowed", 1...4096)
    }

    /// Chunks each publisher's pool needs so that it can never run dry
    /// while every subscriber's buffer and borrow allowance are full.
    var chunksPerPublisher: Int {
        maxSubscribers * (subscriberBufferSize + maxBorrowed) + historySize + maxLoans
    }
}

/// Validated service name: the same characters as segment names, at most
/// 60 of them (the port segments append their own suffixes).
public struct ServiceName: Hashable, Sendable, CustomStringConvertible {
    public let value: String

    public init(_ value: String) throws(ServiceError) {
        if let problem = SegmentName.problem(with: value) { throw .invalidName(value, reason: problem) }
        guard value.utf8.count <= 60 else { throw .invalidName(value, reason: "a service name is at most 60 bytes") }
        self.value = value
    }

    public var description: String { value }

    var segmentName: String { "svc.\(value)" }
    func portSegmentName(_ kind: Character, _ id: UInt64) -> String {
        "svc.\(value).\(kind)\(String(id, radix: 16))"
    }
}
