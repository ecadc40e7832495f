import Shm
import ShmLog
import ShmSystem

/// A log mirrored into a JetStream stream, or built from one.
///
/// ```text
/// subject  <prefix>.log.<stream>   one message per record: the record's bytes
/// header   Shm-Log-Sequence        its sequence number in the source log
///          Shm-Log-Timestamp       its timestamp (CLOCK_REALTIME ns, set by the source's appender)
///          Nats-Msg-Id             the sequence number: JetStream drops a duplicate for two minutes
/// ```
///
/// *Mirror* (the source machine): tails the log and publishes every record
/// to the stream (created if missing: file storage). On start it asks the
/// stream for its last record and resumes after it, so a restarted mirror
/// neither skips nor (thanks to the message id) duplicates a record.
///
/// *Replica* (another machine): a durable pull consumer (`durable`, kept by
/// the server) fetches records in batches and appends each with its source
/// sequence number and timestamp (`LogAppender.appendReplicated`), syncs the
/// batch to storage, then acknowledges it; after a crash the server sends
/// what was not acknowledged again and records already here are skipped by
/// sequence number. Tailers on the replica work as on the source, and
/// `shm log verify` checks it the same way (the source's skipped numbers
/// are skip records here too).
public struct LogReplication: Sendable, Equatable {
    public enum Role: String, Sendable, Equatable { case mirror, replica }
    public var role: Role
    /// The JetStream stream (letters, digits, '-' and '_').
    public var stream: String
    public var directory: String
    /// The replica's durable consumer name (default: the bridge's name and the stream).
    public var durable: String?

    public init(role: Role, stream: String, directory: String, durable: String? = nil) {
        self.role = role
        self.stream = stream
        self.directory = directory
        self.durable = durable
    }

    func validate() throws(BridgeError) {
        let allowed = stream.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }
        guard !stream.isEmpty, allowed else {
            throw .invalidConfiguration("stream '\(stream)': letters, digits, '-' and '_' only")
        }
        guard !directory.isEmpty else { throw .invalidConfiguration("log directory for stream \(stream)") }
    }

    static func subject(prefix: String, stream: String) -> String { "\(prefix).log.\(stream)" }

    enum Header {
        static let sequence = "Shm-Log-Sequence", timestamp = "Shm-Log-Timestamp"
    }
}

/// The source side of a replicated log (one thread).
final class LogMirror {
    let replication: LogReplication
    let subject: String
    let jetStream: JetStream
    let shared: BridgeShared
    let statistics: ServiceStatistics
    var tailer: LogTailer?
    /// Records up to this sequence are in the stream (skipped after a resume).
    var resumeAfter: UInt64 = 0
    var unacknowledged = 0
    var failuresSeen: UInt64 = 0

    init(_ replication: LogReplication, prefix: String, jetStream: JetStream, shared: BridgeShared) {
        self.replication = replication
        subject = LogReplication.subject(prefix: prefix, stream: replication.stream)
        self.jetStream = jetStream
        self.shared = shared
        statistics = shared.statistics(for: "log:" + replication.stream)
    }

    func step(timeout: Duration) {
        do throws(BridgeError) {
            if tailer == nil { try open() }
            guard let tailer else { return }
            var published = 0
            while published < 512, !shared.isStopping {
                let next: LogRecord?
                do throws(LogError) {
                    next = try published == 0 ? tailer.next(timeout: timeout) : tailer.tryNext()
                } catch .timedOut {
                    next = nil
                } catch {
                    throw .log(error)
                }
                guard let record = next else { break }
                guard record.sequence > resumeAfter else { continue }
                try record.bytes.withUnsafeBytes { bytes in
                    Result { () throws(BridgeError) in
                        try jetStream.publishAsync(subject, headers: [(LogReplication.Header.sequence, String(record.sequence)),
                                                                     (LogReplication.Header.timestamp, String(record.timestamp))],
                                                   payload: bytes, messageID: String(record.sequence))
                    }
                }.get()
                ServiceStatistics.add(statistics.samplesOut)
                ServiceStatistics.add(statistics.bytesOut, UInt64(record.bytes.count))
                published += 1
                unacknowledged += 1
            }
            if unacknowledged > 0, published < 512 || unacknowledged >= 4096 {
                try jetStream.waitForAcknowledgements(timeout: .seconds(10))
                unacknowledged = 0
            }
            if jetStream.failedPublishes != failuresSeen {
                // Something was not stored: resume from what the stream has.
                ServiceStatistics.add(statistics.sendFailures, jetStream.failedPublishes &- failuresSeen)
                failuresSeen = jetStream.failedPublishes
                self.tailer = nil
            }
        } catch {
            shared.logThrottled("log mirror \(replication.stream): \(error)")
            tailer = nil
            unacknowledged = 0
            shared.sleep(.seconds(1))
        }
    }

    private func open() throws(BridgeError) {
        try jetStream.ensureStream(replication.stream, subject: subject)
        let last = try jetStream.lastMessage(stream: replication.stream, subject: subject)?
            .header(LogReplication.Header.sequence).flatMap { UInt64($0) } ?? 0
        let log: Log
        do { log = try Log.open(directory: replication.directory) } catch { throw .log(error) }
        resumeAfter = last
        let start: TailStart = last == 0 ? .start : last &+ 1 >= log.nextPosition.sequence ? .end : .sequence(last &+ 1)
        do {
            tailer = try log.tailer(from: start)
        } catch {
            // The next number was a skipped claim or is trimmed: from the oldest, skipping what the stream has.
            do { tailer = try log.tailer(from: .start) } catch { throw .log(error) }
        }
        if last >= log.nextPosition.sequence {
            shared.log("log mirror \(replication.stream): the stream is at \(last), the log only at \(log.nextPosition.sequence - 1)")
        }
    }
}

/// The replica side (one thread).
final class LogReplica {
    let replication: LogReplication
    let subject: String
    let durable: String
    let jetStream: JetStream
    let shared: BridgeShared
    let statistics: ServiceStatistics
    var appender: LogAppender?
    var subscription: PullSubscription?

    init(_ replication: LogReplication, prefix: String, bridgeName: String, jetStream: JetStream, shared: BridgeShared) {
        self.replication = replication
        subject = LogReplication.subject(prefix: prefix, stream: replication.stream)
        durable = replication.durable
            ?? String("\(bridgeName)_\(replication.stream)".map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" ? $0 : "_" })
        self.jetStream = jetStream
        self.shared = shared
        statistics = shared.statistics(for: "log:" + replication.stream)
    }

    func step(timeout: Duration) {
        do throws(BridgeError) {
            if subscription == nil { try open() }
            guard let subscription, let appender else { return }
            let messages = try subscription.fetch(batch: 256, timeout: timeout)
            guard !messages.isEmpty else { return }
            var done: [NatsMessage] = []
            for message in messages {
                guard let sequence = message.header(LogReplication.Header.sequence).flatMap({ UInt64($0) }),
                      let timestamp = message.header(LogReplication.Header.timestamp).flatMap({ UInt64($0) }), sequence > 0 else {
                    ServiceStatistics.add(statistics.malformed)
                    done.append(message) // never appendable: do not have it sent again
                    continue
                }
                do {
                    try appender.appendReplicated(message.data, sequence: sequence, timestamp: timestamp)
                    ServiceStatistics.add(statistics.samplesIn)
                    ServiceStatistics.add(statistics.bytesIn, UInt64(message.data.count))
                } catch .replicaOutOfOrder(_, let next, let offered) where offered < next {
                    ServiceStatistics.add(statistics.duplicates) // here already (sent again after a restart)
                } catch {
                    ServiceStatistics.add(statistics.localDrops)
                    shared.logThrottled("log replica \(replication.stream): record \(sequence): \(error)")
                    break // not acknowledged: the server sends it again
                }
                done.append(message)
            }
            do { try appender.flush() } catch { throw .log(error) }
            for message in done { try subscription.acknowledge(message) }
        } catch {
            shared.logThrottled("log replica \(replication.stream): \(error)")
            subscription = nil
            shared.sleep(.seconds(1))
        }
    }

    private func open() throws(BridgeError) {
        try jetStream.ensureStream(replication.stream, subject: subject)
        if appender == nil {
            do { appender = try Log.openOrCreate(directory: replication.directory).appender() } catch { throw .log(error) }
        }
        subscription = try jetStream.pullSubscribe(subject, durable: durable)
    }
}
