#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Shm
import ShmLog

/// `shm log …`: the persistent memory-mapped log.
struct LogCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "log",
        abstract: "Append to, tail, inspect, verify and trim a persistent memory-mapped log (a directory).",
        subcommands: [LogAppendCommand.self, LogTailCommand.self, LogStatCommand.self, LogVerifyCommand.self, LogTrimCommand.self,
                      LogPretouchCommand.self]
    )
}

struct LogAppendCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "append", abstract: "Append lines from stdin (or --message) as records; creates the log if missing.")

    @Argument(help: "Log directory.") var directory: String
    @Option(name: .customLong("message"), help: "Append this text instead of reading stdin (repeatable).") var messages: [String] = []
    @Option(name: .customLong("segment-size"), help: "Segment size when creating the log.", transform: Size.parse)
    var segmentSize = Size(bytes: 64 << 20)
    @Option(help: "none, always, records:N or interval:DURATION (e.g. interval:100ms).") var durability = "none"
    @Flag(help: "Print each record's sequence number and position.") var verbose = false
    @Flag(help: "Run a pretoucher beside the appender (see `shm log pretouch`).") var pretouch = false

    @OptionGroup var logging: LoggingOptions

    func run() throws {
        logging.apply()
        guard let policy = Durability(parsing: durability) else {
            throw ValidationError("durability '\(durability)': use none, always, records:N or interval:DURATION")
        }
        let log = try reporting { try Log.openOrCreate(directory: directory, config: LogConfig(segmentSize: segmentSize.bytes)) }
        let appender = try reporting { try log.appender(durability: policy) }
        // After the appender: its recovery (if it runs one) sees the log as the last appenders left it.
        let pretoucher = pretouch ? try reporting { try log.pretoucher() } : nil
        defer { pretoucher?.stop() }
        if let recovery = appender.recovery, recovery.abandonedClaims + recovery.truncatedBytes + recovery.corruptRecordsKept > 0 {
            StandardStreams.printError("recovered: \(recovery.abandonedClaims) abandoned claim(s), \(recovery.truncatedBytes) torn bytes cleared, "
                                       + "\(recovery.corruptRecordsKept) corrupt record(s) kept")
        }
        var appended = 0
        func append(_ text: String) throws {
            let record = try reporting { try appender.append(text) }
            appended += 1
            if verbose { StandardStreams.printLine("\(record.sequence) \(record.position)") }
        }
        if messages.isEmpty {
            while let line = readLine(strippingNewline: true) { try append(line) }
        } else {
            for message in messages { try append(message) }
        }
        try reporting { try appender.flush() }
        StandardStreams.printError("appended \(appended) record\(appended == 1 ? "" : "s") to \(directory)")
    }
}

struct LogTailCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tail", abstract: "Print records: from the start, the end, a sequence number or a time.")

    @Argument(help: "Log directory.") var directory: String
    @Option(help: "start, end, a sequence number, or @WALLCLOCK_NS for a time.") var from = "start"
    @Flag(help: "Keep waiting for new records (like tail -f).") var follow = false
    @Option(help: "Stop after this many records.") var count: Int?
    @Option(help: "With --follow: give up after this long without a record, e.g. 5s.", transform: parseDuration)
    var timeout: Duration?
    @Flag(help: "One JSON object per record.") var json = false
    @Flag(name: .customLong("fail-on-gap"),
          help: "Fail when records were deleted by retention before being read (default: a notice on stderr, then go on).")
    var failOnGap = false

    struct Line: Encodable {
        let sequence: UInt64
        let position: String
        let timestamp: UInt64
        let bytes: Int
        let text: String
        enum CodingKeys: String, CodingKey { case sequence, position, bytes, text, timestamp = "timestamp_ns" }
    }

    @OptionGroup var logging: LoggingOptions

    func run() throws {
        logging.apply()
        let start: TailStart
        switch from {
        case "start": start = .start
        case "end": start = .end
        default:
            if from.hasPrefix("@"), let time = UInt64(from.dropFirst()) { start = .time(time) }
            else if let sequence = UInt64(from), sequence > 0 { start = .sequence(sequence) }
            else { throw ValidationError("--from '\(from)': use start, end, a sequence number or @WALLCLOCK_NS") }
        }
        if follow { Interruptible.begin() }
        let log = try reporting { try Log.open(directory: directory) }
        let tailer = try reporting { try log.tailer(from: start, onDeletedSegment: failOnGap ? .fail : .moveToOldest) }
        var printed = 0
        var lastSequence: UInt64?
        while count.map({ printed < $0 }) ?? true {
            let record: LogRecord
            let jumps = tailer.retentionJumps
            do {
                if follow {
                    let next = try Interruptible.wait(timeout: timeout) { slice throws(LogError) -> LogRecord? in
                        do throws(LogError) { return try tailer.next(timeout: slice) } catch {
                            if case .timedOut = error { return nil }
                            throw error
                        }
                    }
                    guard let next else {
                        throw CommandFailure("no record within \(timeout.map { "\($0)" } ?? "the timeout") (\(printed) printed)")
                    }
                    record = next
                } else {
                    guard let next = try tailer.tryNext() else { break }
                    record = next
                }
            } catch let error as LogError {
                switch error {
                case .corruptRecord:
                    StandardStreams.printError("skipped: \(error)")
                    continue
                case .positionDeleted:
                    throw CommandFailure("\(error) (retention deleted records before they were read)")
                default: throw CommandFailure(error.description)
                }
            }
            if tailer.retentionJumps != jumps {
                let gap = lastSequence.map { record.sequence > $0 + 1 ? " \(record.sequence - $0 - 1) records" : "" } ?? ""
                StandardStreams.printError("notice: retention deleted\(gap) before this tailer read them"
                    + (lastSequence.map { " (after sequence \($0))" } ?? "") + "; continuing at sequence \(record.sequence)")
            }
            lastSequence = record.sequence
            printed += 1
            if json {
                try printJSONLine(Line(sequence: record.sequence, position: record.position.description, timestamp: record.timestamp,
                                       bytes: record.bytes.count, text: record.text))
            } else {
                StandardStreams.printLine(record.text)
            }
        }
    }
}

struct LogStatCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stat", abstract: "Segments, records, size, first and last sequence and time.")

    @Argument(help: "Log directory.") var directory: String
    @Flag(help: "Output JSON.") var json = false

    struct Report: Encodable {
        let directory: String
        let segments: Int
        let segmentSize: Int
        let bytes: Int
        let records: Int
        let firstSequence: UInt64?
        let lastSequence: UInt64?
        let firstTime: UInt64?
        let lastTime: UInt64?
        let nextPosition: String
        let warnings: [String]
        enum CodingKeys: String, CodingKey {
            case directory, segments, bytes, records, warnings
            case segmentSize = "segment_size", firstSequence = "first_sequence", lastSequence = "last_sequence"
            case firstTime = "first_time_ns", lastTime = "last_time_ns", nextPosition = "next_position"
        }
    }

    @OptionGroup var logging: LoggingOptions

    func run() throws {
        logging.apply()
        let log = try reporting { try Log.open(directory: directory) }
        let s = log.stat()
        let report = Report(directory: directory, segments: s.segments, segmentSize: s.segmentSize, bytes: s.bytes, records: s.records,
                            firstSequence: s.firstSequence, lastSequence: s.lastSequence, firstTime: s.firstTime, lastTime: s.lastTime,
                            nextPosition: s.nextPosition.description, warnings: s.warnings)
        for warning in s.warnings { StandardStreams.printError("warning: \(warning) (run `shm log verify`)") }
        if json { return try printJSON(report) }
        func time(_ ns: UInt64?) -> String { ns.map { formatWallClock($0) } ?? "-" }
        StandardStreams.printLine("""
            log:       \(directory)
            segments:  \(s.segments) × \(ByteCount.format(s.segmentSize)) (\(ByteCount.format(s.bytes)) on disk)
            records:   \(s.records)
            sequence:  \(s.firstSequence.map(String.init) ?? "-") … \(s.lastSequence.map(String.init) ?? "-")
            time:      \(time(s.firstTime)) … \(time(s.lastTime))
            next:      \(s.nextPosition)
            """)
    }
}

struct LogVerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify", abstract: "Check every record's CRC32C and order; exits 1 on corruption.")

    @Argument(help: "Log directory.") var directory: String
    @Flag(help: "Output JSON.") var json = false

    struct Report: Encodable {
        let records: Int
        let skipped: Int
        let intact: Bool
        let problems: [String]
    }

    @OptionGroup var logging: LoggingOptions

    func run() throws {
        logging.apply()
        let log = try reporting { try Log.open(directory: directory) }
        let result = log.verify()
        if json {
            try printJSON(Report(records: result.records, skipped: result.skipped, intact: result.isIntact, problems: result.problems.map(\.description)))
        } else {
            for problem in result.problems { StandardStreams.printLine("CORRUPT \(problem)") }
            StandardStreams.printLine("\(result.records) records intact, \(result.skipped) skipped, \(result.problems.count) problem(s)")
        }
        if !result.isIntact { throw ExitCode(1) }
    }
}

struct LogTrimCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trim", abstract: "Retention: delete the oldest whole segments beyond a total size or age.")

    @Argument(help: "Log directory.") var directory: String
    @Option(name: .customLong("max-size"), help: "Keep at most this many bytes of segments.", transform: Size.parse) var maxSize: Size?
    @Option(name: .customLong("max-age"), help: "Delete segments whose records are all older than this, e.g. 7d is 168h.", transform: parseDuration)
    var maxAge: Duration?

    @OptionGroup var logging: LoggingOptions

    func run() throws {
        logging.apply()
        guard maxSize != nil || maxAge != nil else { throw ValidationError("give --max-size and/or --max-age") }
        let log = try reporting { try Log.open(directory: directory) }
        let deleted = try reporting { try log.trim(maxBytes: maxSize?.bytes, maxAge: maxAge) }
        StandardStreams.printLine("deleted \(deleted.count) segment\(deleted.count == 1 ? "" : "s")"
                                  + (deleted.isEmpty ? "" : ": " + deleted.map(String.init).joined(separator: ", ")))
    }
}

/// `2026-11-22 07:55:01.123456789 UTC` from wall-clock nanoseconds.
func formatWallClock(_ ns: UInt64) -> String {
    var seconds = time_t(ns / 1_000_000_000)
    var parts = tm()
    gmtime_r(&seconds, &parts)
    func pad(_ v: Int32, _ n: Int = 2) -> String { let s = String(v); return String(repeating: "0", count: max(0, n - s.count)) + s }
    let fraction = String(ns % 1_000_000_000)
    let date: String = pad(parts.tm_year + 1900, 4) + "-" + pad(parts.tm_mon + 1) + "-" + pad(parts.tm_mday)
    let clock: String = pad(parts.tm_hour) + ":" + pad(parts.tm_min) + ":" + pad(parts.tm_sec)
    let nanos: String = String(repeating: "0", count: 9 - fraction.count) + fraction
    return date + " " + clock + "." + nanos + " UTC"
}

/// `shm log pretouch`: a `LogPretoucher` in a process of its own, for
/// appenders in other processes (the page cache is shared).
struct LogPretouchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pretouch",
        abstract: "Keep the pages ahead of a log's appenders ready and make its next segment early (until interrupted).",
        discussion: """
            Follows the log's claim position and populates --lead bytes past it \
            (madvise MADV_POPULATE_WRITE in this process's own mapping: a tmpfs page is zeroed by the first fault \
            that maps it, so appenders in any process then skip that cost), and makes the next segment when the \
            claim is past half the current one, so no append pays for creating it. Writes no \
            record. Prints a ready line, then on SIGINT/SIGTERM what it did.
            """)

    @Argument(help: "Log directory (it must exist).") var directory: String
    @Option(help: "Bytes to keep ready past the claim position, e.g. 8MiB.", transform: Size.parse) var lead = Size(bytes: 8 << 20)
    @Option(help: "Sleep between looks when ready, e.g. 100us.", transform: parseDuration) var interval: Duration = .microseconds(100)
    @Option(help: "Pin the pretouching thread to this CPU.") var cpu: Int?
    @Option(help: "Stop after this long instead of waiting for a signal, e.g. 10s.", transform: parseDuration) var duration: Duration?

    @OptionGroup var logging: LoggingOptions

    func run() throws {
        logging.apply()
        Interruptible.begin()
        let log = try reporting { try Log.open(directory: directory) }
        let pretoucher = try reporting { try log.pretoucher(lead: lead.bytes, interval: interval, cpu: cpu) }
        StandardStreams.printLine("pretouching \(directory): \(pretoucher.lead) bytes ahead of the claim")
        defer {
            pretoucher.stop()
            StandardStreams.printLine("pretouched \(pretoucher.touchedBytes) bytes, \(pretoucher.segmentsMade) next segment(s) made, "
                                      + "\(pretoucher.failures) failure(s)")
        }
        _ = try Interruptible.wait(timeout: duration) { slice -> Bool? in
            sleepNanoseconds(UInt64(slice.nanoseconds))
            return nil
        }
    }
}
