import ArgumentParser
import Foundation
import Logging
import Shm

extension Logger.Level: @retroactive ExpressibleByArgument {}

/// `--log-level`: the library's operator events (reclaimed ports and nodes,
/// log recovery, corrupt records skipped, NATS disconnects) on stderr.
struct LoggingOptions: ParsableArguments {
    @Option(help: ArgumentHelp(
        "Report what the library does for the operator (reclaimed ports, log recovery, corrupt records, NATS reconnects) on stderr, at this level and above (default: $SHM_LOG_LEVEL, else silent).",
        valueName: "level"))
    var logLevel: Logger.Level?

    /// Routes `ShmLogging.logger` to stderr at the chosen level (nothing
    /// when neither the option nor SHM_LOG_LEVEL is set).
    func apply() {
        let fromEnvironment = ProcessInfo.processInfo.environment["SHM_LOG_LEVEL"].flatMap { Logger.Level(rawValue: $0.lowercased()) }
        guard let level = logLevel ?? fromEnvironment else { return }
        var logger = Logger(label: "swift-shm", factory: { label in StreamLogHandler.standardError(label: label) })
        logger.logLevel = level
        ShmLogging.logger = logger
    }
}
