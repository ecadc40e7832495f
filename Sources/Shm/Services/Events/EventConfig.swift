import ShmSystem
@_spi(ShmInternals) import ShmPrimitives

/// Configuration of an event service.
public struct EventConfig: Hashable, Sendable {
    public var maxNotifiers: Int
    public var maxListeners: Int
    /// Event ids run from 0 to `maxEventID`.
    public var maxEventID: Int

    public init(maxNotifiers: Int = 16, maxListeners: Int = 16, maxEventID: Int = 63) {
        self.maxNotifiers = maxNotifiers
        self.maxListeners = maxListeners
        self.maxEventID = maxEventID
    }
}

/// An event id (0…`maxEventID`).
public struct EventID: Hashable, Sendable, Comparable, CustomStringConvertible, ExpressibleByIntegerLiteral {
    public let value: Int
    public init(_ value: Int) { self.value = value }
    public init(integerLiteral value: Int) { self.value = value }
    public static func < (a: EventID, b: EventID) -> Bool { a.value < b.value }
    public var description: String { "\(value)" }
}
