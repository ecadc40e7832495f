import CoreMetrics
import Logging

/// How the library's layers report an operator event: a line through
/// `ShmLogging.logger` and, where it is a count, a swift-metrics `Counter`
/// (created at the event: these are rare paths, never per message).
/// The counters' labels are listed in DESIGN.md ("Logging and metrics").
package enum Diagnostics {
    package static func notice(_ message: @autoclosure () -> String, _ metadata: [String: String] = [:]) {
        log(.notice, message(), metadata)
    }

    package static func warning(_ message: @autoclosure () -> String, _ metadata: [String: String] = [:]) {
        log(.warning, message(), metadata)
    }

    package static func debug(_ message: @autoclosure () -> String, _ metadata: [String: String] = [:]) {
        log(.debug, message(), metadata)
    }

    /// Adds `amount` to the counter `label` with `dimensions`.
    package static func count(_ label: String, _ dimensions: [(String, String)] = [], by amount: Int = 1) {
        Counter(label: label, dimensions: dimensions).increment(by: amount)
    }

    private static func log(_ level: Logger.Level, _ message: @autoclosure () -> String, _ metadata: [String: String]) {
        let logger = ShmLogging.logger
        guard logger.logLevel <= level else { return }
        logger.log(level: level, "\(message())", metadata: metadata.mapValues { .string($0) })
    }
}
