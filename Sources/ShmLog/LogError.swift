import ShmSystem

/// Why a log operation failed. Every case names the log directory or the
/// record's position.
public enum LogError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The directory holds no log (`create` one, or check the path).
    case notFound(directory: String)
    /// `create` found a log there already.
    case alreadyExists(directory: String)
    /// A file of the log is not what it should be (foreign file, other
    /// layout version, inconsistent header).
    case invalidLayout(path: String, reason: String)
    /// A configuration value is out of range.
    case invalidConfiguration(String)
    /// A record larger than a segment can hold.
    case recordTooLarge(bytes: Int, maximum: Int)
    /// A record whose checksum or header does not hold up. Tailers skip past
    /// it: the next call continues with the record after it.
    case corruptRecord(position: LogPosition, sequence: UInt64?, reason: String)
    /// The tailer's position is in a segment that retention deleted (tailers
    /// created with `onDeletedSegment: .fail`).
    case positionDeleted(LogPosition, oldestRetained: LogPosition)
    /// No record with this sequence number (or at/after this time) exists.
    case noSuchRecord(String)
    /// Nothing arrived in time.
    case timedOut(Duration)
    /// A system call failed.
    case system(operation: String, path: String, Errno)
    /// Mapping a segment failed.
    case mapping(MappingError)
    /// A segment file is shorter than the log's segment size: someone cut it
    /// (`truncate`, a bad copy, power loss). What was past its end is gone.
    /// Recovery (the next appender when none is alive) extends it with
    /// zeros and marks it, and `verify` reports it from then on.
    case segmentShrunk(path: String, expectedBytes: Int, actualBytes: Int)
    /// A replicated record's sequence number is behind the replica's next
    /// one (it is there already), or another appender took the number.
    case replicaOutOfOrder(directory: String, next: UInt64, offered: UInt64)
    /// An exclusive appender was asked for while other appenders are open,
    /// or an appender while an exclusive one is.
    case appendersBusy(directory: String, exclusiveWanted: Bool)

    public var description: String {
        switch self {
        case .notFound(let directory): return "no log in '\(directory)' (no log.meta)"
        case .alreadyExists(let directory): return "a log already exists in '\(directory)'"
        case .invalidLayout(let path, let reason): return "'\(path)' is not a valid log file: \(reason)"
        case .invalidConfiguration(let reason): return "invalid log configuration: \(reason)"
        case .recordTooLarge(let bytes, let maximum): return "record of \(bytes) bytes exceeds the segment's maximum of \(maximum)"
        case .corruptRecord(let position, let sequence, let reason):
            return "corrupt record at \(position)\(sequence.map { " (sequence \($0))" } ?? ""): \(reason)"
        case .positionDeleted(let position, let oldest):
            return "position \(position) was deleted by retention; the oldest retained record is at \(oldest)"
        case .noSuchRecord(let what): return "no record \(what)"
        case .timedOut(let timeout): return "no record within \(timeout.timeoutDescription)"
        case .system(let operation, let path, let errno): return "\(operation) '\(path)' failed: \(errno)"
        case .mapping(let error): return "\(error)"
        case .segmentShrunk(let path, let expected, let actual):
            return "log segment '\(path)' is \(actual) bytes, not \(expected): it was cut short and what was past byte \(actual) is lost"
        case .appendersBusy(let directory, let exclusiveWanted):
            return exclusiveWanted
                ? "log '\(directory)' has other appenders open: an exclusive appender must be the only one"
                : "log '\(directory)' has an exclusive appender: no other appender can open until it closes"
        case .replicaOutOfOrder(let directory, let next, let offered):
            return "replica log '\(directory)': record \(offered) offered, the next one here is \(next)"
        }
    }
}

extension LogError {
    /// `.timedOut` after a wait of `timeout` (nil: none was given).
    static func timedOut(after timeout: Duration?) -> LogError { .timedOut(timeout ?? .zero) }
}
