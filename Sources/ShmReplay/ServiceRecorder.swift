import Shm
import ShmLog
import ShmSystem

/// Records every sample of a publish/subscribe service into a log, with its
/// publisher and sequence number (`RecordedSampleFormat`), so that a late
/// subscriber can read the service's past and continue live
/// (`ReplayingSubscriber`). The library form of `shm record`.
///
/// The recorder is an ordinary subscriber: under `block` it slows the
/// publishers rather than miss a sample; under the other policies what it
/// missed shows as lost in `shm service` and as a sequence gap in the log.
/// Each sample is claimed in the log and written in place (one copy).
public final class ServiceRecorder {
    public let service: PublishSubscribeService<UInt8>
    let subscriber: Subscriber<UInt8>
    let appender: LogAppender
    /// Samples recorded so far.
    public private(set) var recorded = 0

    /// Opens `serviceName` (it must exist) and the log in `directory`
    /// (created if missing), and writes the descriptor record.
    public init(node: Node, service serviceName: String, log directory: String,
                config: LogConfig = LogConfig(), durability: Durability = .none, waitStrategy: WaitStrategy = .default) throws {
        service = try node.openAnyPublishSubscribe(serviceName)
        subscriber = try service.subscriber(waitStrategy: waitStrategy)
        appender = try Log.openOrCreate(directory: directory, config: config).appender(durability: durability)
        let text = Array(RecordedSampleFormat.descriptor(service.payloadType).utf8)
        try write(kind: RecordedSampleFormat.descriptorKind, publisher: 0, sequence: 0, count: text.count) { buffer in
            text.withUnsafeBytes { buffer.copyMemory(from: $0) }
        }
    }

    /// Records what arrives within `timeout`; returns how many samples.
    @discardableResult
    public func poll(timeout: Duration) throws -> Int {
        var count = 0
        var next: ReceivedSample<UInt8>
        do throws(ServiceError) { next = try subscriber.receive(timeout: timeout) } catch {
            if case .timedOut = error { return 0 }
            throw error
        }
        while true {
            let bytes = next.unsafeBytes
            try write(kind: RecordedSampleFormat.sampleKind, publisher: next.publisherID, sequence: next.sequence,
                      count: bytes.count) { buffer in
                if bytes.count > 0 { buffer.copyMemory(from: bytes) }
            }
            count += 1
            guard count < 4096, let more = try subscriber.tryReceive() else { break }
            next = more
        }
        recorded += count
        return count
    }

    private func write(kind: UInt32, publisher: UInt64, sequence: UInt64, count: Int,
                       _ fill: (UnsafeMutableRawBufferPointer) -> Void) throws {
        let claim = try appender.claim(count: RecordedSampleFormat.payloadOffset + count)
        let record = claim.unsafeBytes
        record.storeBytes(of: kind.littleEndian, toByteOffset: RecordedSampleFormat.kindOffset, as: UInt32.self)
        record.storeBytes(of: UInt32(0), toByteOffset: RecordedSampleFormat.reservedOffset, as: UInt32.self)
        record.storeBytes(of: publisher.littleEndian, toByteOffset: RecordedSampleFormat.publisherOffset, as: UInt64.self)
        record.storeBytes(of: sequence.littleEndian, toByteOffset: RecordedSampleFormat.sequenceOffset, as: UInt64.self)
        fill(UnsafeMutableRawBufferPointer(rebasing: record[RecordedSampleFormat.payloadOffset...]))
        try claim.commit()
    }
}
