/// Why an operation on a ring or queue failed.
///
/// A value read from shared memory that is out of range is reported here
/// (`corruptIndices`, `corruptRecord`): a damaged or hostile peer costs the
/// reader a message or the structure, never a crash or a hang.
public enum QueueError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The memory given for the structure is smaller than its layout needs.
    case regionTooSmall(needed: Int, available: Int)
    /// A capacity or size that cannot be laid out (not a power of two, zero, too big).
    case invalidConfiguration(String)
    /// Attaching found no valid header: wrong magic, version, checksum or sizes.
    case invalidLayout(String)
    /// The message is larger than the structure accepts.
    case messageTooLarge(size: Int, maximum: Int)
    /// The caller's buffer cannot hold the next message (which stays queued).
    case bufferTooSmall(needed: Int, available: Int)
    /// A typed receive found a message of another size.
    case sizeMismatch(expected: Int, actual: Int)
    /// Nothing happened within the timeout.
    case timedOut(Duration)
    /// The shared read/write positions are inconsistent; the structure
    /// cannot be used until it is re-created.
    case corruptIndices(String)
    /// One record was unreadable and was skipped (counted as lost); the
    /// structure stays usable.
    case corruptRecord(offset: Int, reason: String)
    /// Another live process already holds this role (SPSC: one producer,
    /// one consumer).
    case roleTaken(role: String, pid: Int32)

    public var description: String {
        switch self {
        case .regionTooSmall(let needed, let available): "region of \(available) bytes is too small; the layout needs \(needed)"
        case .invalidConfiguration(let reason): "invalid configuration: \(reason)"
        case .invalidLayout(let reason): "not a valid structure: \(reason)"
        case .messageTooLarge(let size, let maximum): "message of \(size) bytes exceeds the maximum of \(maximum)"
        case .bufferTooSmall(let needed, let available): "the next message needs \(needed) bytes; the buffer has \(available)"
        case .sizeMismatch(let expected, let actual): "expected a message of \(expected) bytes, got \(actual)"
        case .timedOut(let timeout): "timed out after \(timeout.timeoutDescription)"
        case .corruptIndices(let reason): "corrupt shared indices: \(reason)"
        case .corruptRecord(let offset, let reason): "corrupt record at offset \(offset) skipped: \(reason)"
        case .roleTaken(let role, let pid): "the \(role) role is held by live process \(pid)"
        }
    }
}

extension QueueError {
    /// `.timedOut` after a wait of `timeout` (nil: none was given).
    @usableFromInline
    static func timedOut(after timeout: Duration?) -> QueueError { .timedOut(timeout ?? .zero) }
}

import ShmSystem

/// Absolute monotonic deadline for a relative timeout (nil: wait for ever).
@inlinable @inline(__always)
package func deadline(after timeout: Duration?) -> UInt64? {
    guard let timeout else { return nil }
    return monotonicNanoseconds() &+ timeout.nanoseconds
}
