import ArgumentParser
import Shm
import ShmLog
import ShmReplay

/// `shm record` — record a service's samples into a log.
struct RecordCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "record",
        abstract: "Record every sample of a publish/subscribe service into a log (for replay-then-live: shm sub --replay).",
        discussion: """
            Each record holds the sample's publisher, sequence number and bytes. Runs until SIGINT/SIGTERM; \
            prints the number of samples recorded. The service must exist.
            """)

    @Argument(help: "Service name.") var serviceName: String
    @Option(help: "The log directory (created if missing).") var log: String
    @Option(help: "Stop after this many samples.") var count: Int?

    @OptionGroup var logging: LoggingOptions

    func run() throws {
        logging.apply()
        Interruptible.begin()
        let node = try reporting { try Node(name: "shm-record") }
        let recorder = try reporting { try ServiceRecorder(node: node, service: serviceName, log: log) }
        StandardStreams.printLine("recording \(serviceName) into \(log)")
        defer { StandardStreams.printLine("recorded \(recorder.recorded)") }
        while count.map({ recorder.recorded < $0 }) ?? true {
            try Interruptible.check()
            _ = try reporting { try recorder.poll(timeout: Interruptible.slice) }
        }
    }
}
