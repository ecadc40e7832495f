/// What every kind of segment this library creates has in common: one
/// mapping that starts with a validated `SegmentHeader`, and a data area
/// behind it.
public protocol Segment: AnyObject, Sendable {
    /// The whole segment, header included.
    var mapping: MemoryMapping { get }
    /// The header as validated when the segment was created or opened.
    var info: SegmentHeader.Info { get }
}

extension Segment {
    /// The data area: everything after the header.
    public var data: MappedBytes {
        MappedBytes(owner: mapping, offset: info.dataOffset, count: info.dataSize)
    }

    /// The header's `state` word as it is now (another process may retire the segment).
    public var currentState: SegmentHeader.State? {
        SegmentHeader.State(rawValue: SegmentHeader.loadState(mapping.unsafeBaseAddress))
    }
}

/// What a create call does with the data area before other processes can see
/// the segment. It runs before the header is published as ready, so openers
/// never observe a half-initialized structure.
public typealias SegmentInitializer = (MappedBytes) throws -> Void

/// Sizes accepted for a segment's data area.
public enum SegmentSize {
    /// The largest data area accepted (1 TiB): anything larger is a typo.
    public static let maximum = 1 << 40

    /// Validates `size` and returns the total object size (header + data
    /// rounded up to whole pages).
    public static func total(forData size: Int) throws(SegmentError) -> Int {
        guard size > 0 else { throw .invalidSize(requested: size, reason: "a segment needs at least 1 byte") }
        guard size <= maximum else {
            throw .invalidSize(requested: size, reason: "larger than the \(ByteCount.format(maximum)) limit")
        }
        return SegmentHeader.size + roundUp(size, toMultipleOf: pageSize)
    }
}

/// Converts a failure to run the caller's initializer into a segment error.
func initializerFailed(_ error: any Error, name: String) -> SegmentError {
    if let error = error as? SegmentError { return error }
    return .corruptHeader(name: name, reason: "initializer failed: \(error)")
}
