import Shm
import ShmLog
import ShmSystem

/// A sample from a `ReplayingSubscriber`: read from the recording, or live
/// (then read in place in the publisher's memory, held until this goes).
public struct ReplayedSample: ~Copyable {
    public let publisherID: UInt64
    /// The publisher's number of the sample (1, 2, …).
    public let sequence: UInt64
    /// True if it came from the recording, false if live.
    public let fromRecording: Bool
    /// Holds a live sample's chunk (its bytes are `liveBytes`) while this lives.
    let live: ReceivedSample<UInt8>?
    let liveBytes: UnsafeRawBufferPointer?
    let recorded: [UInt8]

    init(publisherID: UInt64, sequence: UInt64, fromRecording: Bool, live: consuming ReceivedSample<UInt8>?, recorded: [UInt8]) {
        self.publisherID = publisherID
        self.sequence = sequence
        self.fromRecording = fromRecording
        switch consume live {
        case .some(let sample):
            liveBytes = sample.unsafeBytes
            self.live = consume sample
        case .none:
            liveBytes = nil
            self.live = nil
        }
        self.recorded = recorded
    }

    /// The payload's bytes (valid during `body`).
    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        if let liveBytes { return try body(liveBytes) }
        return try recorded.withUnsafeBytes(body)
    }
}

/// Replay-then-live: a subscriber that joins late reads the service's past
/// from a recording (`ServiceRecorder`'s log) and continues with live
/// samples, per publisher in order, without a duplicate and without a gap
/// while the recorder keeps up.
///
/// How: the live subscriber connects first, so nothing published from then
/// on is missed (within its buffer and overflow policy). Records are
/// delivered while the log has them; a live sample is delivered when it is
/// the next number of its publisher; one that is older than what was
/// delivered is a duplicate and dropped; one that is newer than the next
/// number waits for the recording to catch up (the recorder may be behind)
/// for at most `catchUpTimeout`, after which it is delivered and the
/// missing numbers are counted in `gaps`. A publisher first seen live with
/// a number above 1 and absent from the recording costs one such wait.
/// The log keeps being read after that (records of samples already
/// delivered live are skipped), so a recorder that falls behind never
/// causes a gap.
public final class ReplayingSubscriber {
    public let service: PublishSubscribeService<UInt8>
    let subscriber: Subscriber<UInt8>
    let tailer: LogTailer
    public var catchUpTimeout: Duration = .seconds(1)
    /// The newest number delivered, per publisher.
    var delivered: [UInt64: UInt64] = [:]
    var held: ReceivedSample<UInt8>?
    var heldSince: UInt64 = 0
    /// Samples read from the recording / live, dropped as duplicates, and
    /// sequence numbers never delivered (the recorder did not have them).
    public private(set) var fromRecording = 0, live = 0, duplicates = 0, gaps: UInt64 = 0

    /// - Parameters:
    ///   - node: the node the subscriber registers under.
    ///   - serviceName: the publish/subscribe service (it must exist).
    ///   - directory: the log `ServiceRecorder` writes the service into.
    ///   - start: where in the recording to start (default: its oldest record).
    ///   - waitStrategy: how the live subscriber and the recording's tailer wait.
    /// - Throws: the recording's type differs from the service's (`ServiceError.incompatible`), or what opening
    ///   the service or the log throws.
    public init(node: Node, service serviceName: String, recording directory: String, from start: TailStart = .start,
                waitStrategy: WaitStrategy = .default) throws {
        service = try node.openAnyPublishSubscribe(serviceName)
        subscriber = try service.subscriber(waitStrategy: waitStrategy) // first: nothing published from now on is missed
        tailer = try Log.open(directory: directory).tailer(from: start, waitStrategy: waitStrategy)
    }

    /// The next sample, from the recording or live, waiting at most
    /// `timeout` (nil, the default: for ever).
    ///
    /// - Throws: `ServiceError.timedOut(Duration)`; `.incompatible` when the
    ///   recording holds another payload type; what the subscriber or the
    ///   log's tailer throw.
    public func receive(timeout: Duration? = nil) throws -> ReplayedSample {
        guard let sample = try nextSample(timeout: timeout) else { throw ServiceError.timedOut(timeout ?? .zero) }
        return sample
    }

    /// The next sample if one is there now (from the recording or live).
    public func tryReceive() throws -> ReplayedSample? { try step() }

    @available(*, deprecated, message: "receive(timeout:) throws .timedOut like every receive; tryReceive() does not wait")
    public func next(timeout: Duration?) throws -> ReplayedSample? { try nextSample(timeout: timeout) }

    /// The next sample, waiting at most `timeout`; nil if none came.
    func nextSample(timeout: Duration?) throws -> ReplayedSample? {
        let deadline = timeout.map { monotonicNanoseconds() &+ UInt64($0.components.seconds) * 1_000_000_000
            &+ UInt64($0.components.attoseconds / 1_000_000_000) }
        while true {
            if let sample = try step() { return sample }
            if let deadline, monotonicNanoseconds() >= deadline { return nil }
            // Nothing now: wait a little on the live side (the recording is polled between).
            if held == nil {
                do throws(ServiceError) {
                    held = try subscriber.receive(timeout: .milliseconds(5))
                    heldSince = monotonicNanoseconds()
                } catch {
                    guard case .timedOut = error else { throw error }
                }
            } else {
                if pending == nil, let record = try? tailer.next(timeout: .milliseconds(1)) { pending = record }
            }
        }
    }

    /// A record read while waiting, delivered by the next `step`.
    var pending: LogRecord?

    /// One decision: a record or a live sample to deliver, or nil.
    func step() throws -> ReplayedSample? {
        // The recording first, while it has records.
        while let record = try pending.take() ?? tailer.tryNext() {
            switch record.bytes.withUnsafeBytes({ RecordedEntry($0).map { entry -> (UInt64, UInt64)? in
                if case .sample(let publisher, let sequence, _) = entry { return (publisher, sequence) }
                if case .descriptor(let type) = entry, type != service.payloadType { return (0, 0) } // mismatch marker
                return nil
            } }) {
            case .some(.some((0, 0))):
                throw ServiceError.incompatible(service: service.name, differences: [
                    "payload type: the recording holds another type than the service's \(service.payloadType)"])
            case .some(.some((let publisher, let sequence))):
                if let last = delivered[publisher], sequence <= last {
                    duplicates += 1
                    continue
                }
                delivered[publisher] = sequence
                fromRecording += 1
                return ReplayedSample(publisherID: publisher, sequence: sequence, fromRecording: true, live: nil,
                                      recorded: Array(record.bytes[RecordedSampleFormat.payloadOffset...]))
            default:
                continue // a descriptor of the right type, or a record that is not ours
            }
        }
        // Then live samples.
        while true {
            if held == nil {
                held = try subscriber.tryReceive()
                heldSince = monotonicNanoseconds()
            }
            guard let sample = held.take() else { return nil }
            let publisher = sample.publisherID, sequence = sample.sequence
            let last = delivered[publisher]
            if let last, sequence <= last {
                duplicates += 1
                _ = consume sample // released now: the next one may need the slot
                continue
            }
            let expected = (last ?? 0) &+ 1
            if sequence > expected, monotonicNanoseconds() &- heldSince < catchUpTimeout.nanosecondsValue {
                held = consume sample // the recorder may not have written the ones before it yet
                return nil
            }
            if sequence > expected { gaps &+= sequence - expected }
            delivered[publisher] = sequence
            live += 1
            return ReplayedSample(publisherID: publisher, sequence: sequence, fromRecording: false, live: consume sample, recorded: [])
        }
    }
}

extension Duration {
    var nanosecondsValue: UInt64 {
        let (seconds, attoseconds) = components
        return UInt64(max(0, seconds)) * 1_000_000_000 &+ UInt64(max(0, attoseconds / 1_000_000_000))
    }
}
