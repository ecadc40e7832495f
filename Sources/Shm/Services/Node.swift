import Synchronization
import ShmSystem
@_spi(ShmInternals) import ShmPrimitives

/// A participant in services: one per process or component. A node is
/// registered as a small segment `node.<name>.<pid>-<lease>.<n>` whose
/// header records the process's pid, start time and lease, so survivors
/// (and `shm cleanup`, from any pid namespace) can tell when it died.
///
/// ```text
/// data area: +0 name length UInt32, +4 name (UTF-8, ≤ 40 bytes)
/// ```
public final class Node: Sendable {
    public static let kind = SegmentKind("NODE")
    enum Offset { static let nameLength = 0, name = 4 }
    private static let counter = Atomic<UInt64>(0)

    /// The name given at creation.
    public let name: String
    /// The node's registration segment (removed when the node is released).
    public let segment: SharedMemorySegment
    /// Identifies the node in service port tables.
    let hash: UInt64

    /// Registers a node. Also removes what dead processes left behind in
    /// `/dev/shm` (their nodes and half-finished creations).
    public init(name: String) throws(ServiceError) {
        if let problem = SegmentName.problem(with: name) { throw .invalidName(name, reason: problem) }
        guard name.utf8.count <= 40 else { throw .invalidName(name, reason: "a node name is at most 40 bytes") }
        let n = Node.counter.wrappingAdd(1, ordering: .relaxed).newValue
        // pid-lease: unique across pid namespaces and pid reuse.
        let me = ProcessIdentity.current
        let segmentName = "node.\(name).\(me.pid)-\(ProcessLease.hex(me.lease)).\(n)"
        self.name = name
        self.hash = ServiceLayout.hash(segmentName)
        self.segment = try serviceCall {
            try SharedMemorySegment.create(segmentName, size: 256, kind: Node.kind) { data in
                let bytes = Array(name.utf8)
                data.storeBytes(of: UInt32(bytes.count), toByteOffset: Offset.nameLength, as: UInt32.self)
                data.write(bytes, at: Offset.name)
            }
        }
        _ = ServiceDirectory.removeDeadNodes()
    }
}

/// How a service handle comes about.
public enum OpenMode: Sendable {
    /// The service must exist.
    case open
    /// The service must not exist yet.
    case create
    /// Open it if it exists, create it otherwise.
    case openOrCreate
}
