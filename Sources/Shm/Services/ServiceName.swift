import ShmSystem
@_spi(ShmInternals) import ShmPrimitives

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

    /// Segment `segment` of port `id`'s pool: `svc.<service>.p<id hex>` for
    /// 0, `svc.<service>.p<id hex>-<segment>` for the segments a growing
    /// pool adds (hex IDs have no '-', so the suffix cannot be misread).
    func poolSegmentName(_ id: UInt64, segment: Int) -> String {
        segment == 0 ? portSegmentName(.pool, id) : portSegmentName(.pool, id) + "-\(segment)"
    }

    /// The segments of port `id`'s pool that exist now (`readdir` of
    /// /dev/shm; slow path), as (number, name), segment 0 first if present.
    func existingPoolSegments(_ id: UInt64) -> [(number: Int, name: SegmentName)] {
        let base = portSegmentName(.pool, id)
        var found: [(number: Int, name: SegmentName)] = []
        for file in SegmentDirectory.entries() {
            guard let name = SegmentName.parse(fileName: file), name.uid == ProcessIdentity.userID, name.name.hasPrefix(base) else { continue }
            let rest = name.name.dropFirst(base.count)
            if rest.isEmpty {
                found.append((0, name))
            } else if rest.first == "-", let number = Int(rest.dropFirst()), number >= 1, number < ChunkPool.maxSegments {
                found.append((number, name))
            }
        }
        return found.sorted { $0.number < $1.number }
    }

    /// The name of the pool a port segment belongs to, if `segmentName` is
    /// a grown pool's segment (`…p<id>-<k>` → `…p<id>`); else nil.
    static func basePoolName(of segmentName: String) -> String? {
        guard let dash = segmentName.lastIndex(of: "-"), Int(segmentName[segmentName.index(after: dash)...]) != nil,
              let dot = segmentName[..<dash].lastIndex(of: "."),
              segmentName[segmentName.index(after: dot)...].first == PortSegmentKind.pool.rawValue else { return nil }
        return String(segmentName[..<dash])
    }
}

/// The segments ports own, by the letter in their names.
package enum PortSegmentKind: Character, Sendable {
    /// A publisher's, client's or server's chunk pool (`ChunkPool`).
    case pool = "p"
    /// A subscriber's, client's or server's inbox (`SampleInbox`).
    case inbox = "s"
}
