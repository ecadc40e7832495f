import ShmSystem

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
    /// `svc.<service>.<kind letter><port id hex>`.
    func portSegmentName(_ kind: PortSegmentKind, _ id: UInt64) -> String {
        "svc.\(value).\(kind.rawValue)\(String(id, radix: 16))"
    }
}

/// The segments ports own, by the letter in their names.
package enum PortSegmentKind: Character, Sendable {
    /// A publisher's, client's or server's chunk pool (`ChunkPool`).
    case pool = "p"
    /// A subscriber's, client's or server's inbox (`SampleInbox`).
    case inbox = "s"
}
