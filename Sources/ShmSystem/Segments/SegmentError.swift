/// Why creating, opening, validating or removing a shared-memory segment failed.
///
/// Errors never leave anything half-created: a create that fails has already
/// unlinked what it made when this is thrown.
public enum SegmentError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The name is empty, too long, or has characters other than `A–Z a–z 0–9 . _ -`.
    case invalidName(String, reason: String)
    /// Zero, negative, or absurdly large size.
    case invalidSize(requested: Int, reason: String)
    /// An exclusive create found a segment with this name already.
    case alreadyExists(name: String)
    /// No segment with this name exists.
    case notFound(name: String)
    /// The segment exists but belongs to someone else or its mode forbids access.
    case permissionDenied(name: String, Errno)
    /// Reserving the segment's pages failed: the backing filesystem is too small.
    case insufficientSpace(name: String, requested: Int, available: Int, filesystem: String)
    /// The object at this name was not created by this library (or not by a
    /// compatible one): it has no swift-shm header.
    case foreign(name: String, reason: String)
    /// The segment is shorter than its header says, or too short for a header.
    case truncated(name: String, actualSize: Int, expectedSize: Int)
    /// The segment's layout version is one this build does not understand.
    case incompatibleVersion(name: String, found: UInt32, supported: UInt32)
    /// The header is present but its contents are inconsistent.
    case corruptHeader(name: String, reason: String)
    /// The segment holds a different kind of structure than the caller expects.
    case kindMismatch(name: String, expected: UInt32, found: UInt32)
    /// The creator has not finished initializing within the timeout.
    case notReady(name: String, waited: Duration)
    /// The creator died before finishing initialization.
    case abandoned(name: String, creatorPID: Int32)
    /// A received memfd lacks the seals that make its size trustworthy.
    case notSealed(name: String, missing: String)
    /// Huge pages were required but cannot back this segment.
    case hugePagesUnavailable(name: String, reason: String)
    /// Any other failed system call, named.
    case system(operation: String, name: String, Errno)

    public var description: String {
        switch self {
        case .invalidName(let name, let reason): "invalid segment name '\(name)': \(reason)"
        case .invalidSize(let requested, let reason): "invalid segment size \(requested): \(reason)"
        case .alreadyExists(let name): "segment '\(name)' already exists (remove it with `shm rm \(name)`)"
        case .notFound(let name): "no segment named '\(name)' (see `shm ls`)"
        case .permissionDenied(let name, let e): "no permission to open segment '\(name)': \(e)"
        case .insufficientSpace(let name, let requested, let available, let fs):
            "cannot create segment '\(name)': it needs \(ByteCount.format(requested)) but \(fs) has only \(ByteCount.format(available)) free (ENOSPC)"
        case .foreign(let name, let reason): "'\(name)' is not a swift-shm segment: \(reason)"
        case .truncated(let name, let actual, let expected):
            "segment '\(name)' is truncated: \(actual) bytes, expected \(expected)"
        case .incompatibleVersion(let name, let found, let supported):
            "segment '\(name)' has layout version \(found); this build supports version \(supported)"
        case .corruptHeader(let name, let reason): "segment '\(name)' has a corrupt header: \(reason)"
        case .kindMismatch(let name, let expected, let found):
            "segment '\(name)' holds a \(SegmentKind(rawValue: found)) structure, expected \(SegmentKind(rawValue: expected))"
        case .notReady(let name, let waited): "segment '\(name)' was not ready after \(waited.timeoutDescription) (its creator is still initializing it)"
        case .abandoned(let name, let pid): "segment '\(name)' was abandoned by its creator (pid \(pid) died while initializing it)"
        case .notSealed(let name, let missing): "memfd segment '\(name)' is not sealed against \(missing); its size cannot be trusted"
        case .hugePagesUnavailable(let name, let reason): "cannot back segment '\(name)' with huge pages: \(reason)"
        case .system(let operation, let name, let e): "\(operation) of segment '\(name)' failed: \(e)"
        }
    }
}
