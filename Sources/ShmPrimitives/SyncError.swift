/// Why an operation on a process-shared mutex, semaphore or event failed.
public enum SyncError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The memory given is too small for the primitive.
    case regionTooSmall(needed: Int, available: Int)
    /// Attaching found no valid header (magic, version, checksum).
    case invalidLayout(String)
    /// Nothing happened within the timeout.
    case timedOut(Duration)
    /// The calling thread already holds the mutex (`EDEADLK`).
    case wouldDeadlock
    /// Unlock by a thread that does not hold the mutex.
    case notOwner(holderTID: UInt32)
    /// The lock word holds a value no owner could have written.
    case corrupt(String)
    /// A futex call failed unexpectedly.
    case system(operation: String, errno: Int32)

    public var description: String {
        switch self {
        case .regionTooSmall(let needed, let available): "region of \(available) bytes is too small; needs \(needed)"
        case .invalidLayout(let reason): "not a valid primitive: \(reason)"
        case .timedOut(let timeout): "timed out after \(timeout.timeoutDescription)"
        case .wouldDeadlock: "the calling thread already holds this mutex"
        case .notOwner(let tid): "unlock by a thread that does not hold the mutex (held by thread \(tid))"
        case .corrupt(let reason): "corrupt primitive: \(reason)"
        case .system(let op, let e): "\(op) failed: errno \(e)"
        }
    }
}

extension QueueError {
    /// A layout error from `LayoutHeader` in the synchronization domain.
    var asSyncError: SyncError {
        switch self {
        case .regionTooSmall(let needed, let available): .regionTooSmall(needed: needed, available: available)
        default: .invalidLayout(description)
        }
    }
}

extension SyncError {
    /// `.timedOut` after a wait of `timeout` (nil: none was given).
    static func timedOut(after timeout: Duration?) -> SyncError { .timedOut(timeout ?? .zero) }
}
