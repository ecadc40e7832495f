import Logging
import Synchronization

/// Where swift-shm reports what an operator needs to know — dead processes'
/// ports and nodes reclaimed, stale files removed, corrupt log records
/// skipped, what log recovery repaired, NATS disconnects and reconnects —
/// through swift-log. Never on a hot path: only where such an event happens.
///
/// Silent by default (a `SwiftLogNoOpLogHandler`), whatever backend the
/// program bootstrapped: a library should not write to a program's output
/// unasked. To route it to the program's logging system:
///
/// ```swift
/// LoggingSystem.bootstrap(StreamLogHandler.standardError)   // once, at start
/// ShmLogging.logger = Logger(label: "swift-shm")            // then this
/// ```
///
/// Levels: `.notice` for recoveries an operator may want to know about
/// (reclaimed ports, repaired logs, reconnects), `.warning` for data that
/// was damaged or lost (a corrupt record skipped), `.debug` for routine
/// housekeeping (stale leases removed). Metadata keys: `service`, `port`,
/// `process`, `log`, `position`, `reason`.
public enum ShmLogging {
    private static let current = Mutex(Logger(label: "swift-shm", factory: { _ in SwiftLogNoOpLogHandler() }))

    /// The logger the library writes through (see the type's documentation).
    public static var logger: Logger {
        get { current.withLock { $0 } }
        set { current.withLock { $0 = newValue } }
    }
}
