import ShmSystem

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
