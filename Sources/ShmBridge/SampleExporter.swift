import Shm
import ShmSystem
import Synchronization

/// Local publish/subscribe services → NATS: one subscriber per exported
/// service, all in one wait set, drained by the bridge's export thread.
/// Each sample goes out as one message, or as consecutive parts when it
/// exceeds the server's payload limit (see `WireFormat`).
///
/// Back-pressure: the bridge's subscriber is an ordinary subscriber of the
/// service, so a bridge that falls behind meets the service's overflow
/// policy (`block` slows the local publishers, the others drop and count
/// as lost in `shm service`). nats.c buffers what it cannot send yet (8 MiB
/// while disconnected); past that a sample fails and counts as
/// `send_failures`.
final class SampleExporter {
    struct Exported {
        let name: String
        let service: PublishSubscribeService<UInt8>
        let subscriber: Subscriber<UInt8>
        /// The subject and the headers every sample carries (`Shm-Service`, `Shm-Type`).
        let template: NatsMessageTemplate
        let statistics: ServiceStatistics
    }

    let node: Node
    let connection: NatsConnection
    let configuration: BridgeConfiguration
    let origin: UInt64
    let shared: BridgeShared
    let waitSet: WaitSet
    var exported: [String: Exported] = [:]
    var byAttachment: [WaitSet.Attachment: String] = [:]
    var discovery = ServiceDiscovery(.publishSubscribe, action: "export")

    init(node: Node, connection: NatsConnection, configuration: BridgeConfiguration, origin: UInt64, shared: BridgeShared) {
        self.node = node
        self.connection = connection
        self.configuration = configuration
        self.origin = origin
        self.shared = shared
        waitSet = WaitSet(waitStrategy: configuration.exportWait)
    }

    /// Attaches to matching local services not attached yet.
    func discover() {
        let configuration = self.configuration, shared = self.shared
        discovery.discover(wants: { BridgeConfiguration.matches($0, configuration.exports) }, handled: { exported[$0] != nil },
                           log: { shared.log($0) }) { (name: String) throws(ServiceError) -> ServiceDiscovery.Outcome in
            guard shared.claim(name) else { return .deferred }
            let service = try node.openAnyPublishSubscribe(name)
            let subscriber = try service.subscriber()
            let entry = Exported(
                name: name, service: service, subscriber: subscriber,
                template: NatsMessageTemplate(
                    subject: WireFormat.sampleSubject(prefix: configuration.prefix, service: name),
                    headers: WireFormat.serviceHeaders(service: name, payload: service.payloadType, config: service.config)),
                statistics: shared.statistics(for: name))
            exported[name] = entry
            byAttachment[waitSet.attach(subscriber)] = name
            return .taken
        }
    }

    /// Waits up to `timeout` for samples and sends what arrived.
    func poll(timeout: Duration) {
        guard waitSet.count > 0 else {
            shared.sleep(timeout)
            return
        }
        let ready = (try? waitSet.wait(timeout: timeout)) ?? []
        for attachment in ready {
            guard let name = byAttachment[attachment], let entry = exported[name] else { continue }
            drain(entry)
        }
    }

    /// Samples of one service waiting to go out together (`WireFormat.Batch`).
    var batch = WireFormat.BatchWriter()

    private func drain(_ entry: Exported) {
        var budget = 1024 // then let other services have a turn
        room = Self.room(serverLimit: connection.maxPayload) // once per drain: nats.c takes the connection's lock
        let batchLimit = self.batchLimit
        defer { flushBatch(entry) }
        while budget > 0, !shared.isStopping {
            let received: ReceivedSample<UInt8>?
            do throws(ServiceError) { received = try entry.subscriber.tryReceive() } catch {
                shared.log("'\(entry.name)': \(error)")
                return
            }
            guard let sample = received else { return }
            budget -= 1
            // (An empty sample goes alone: a batch entry holds at least a byte.)
            if configuration.batching, !sample.unsafeBytes.isEmpty, !shared.isOwnPublisher(sample.publisherID) {
                let timestamp = wallClockNanoseconds()
                if batch.add(publisher: sample.publisherID, sequence: sample.sequence, timestamp: timestamp,
                             bytes: sample.unsafeBytes, limit: batchLimit) { continue }
                // Full: send it, and start the next batch with this sample if it fits one.
                flushBatch(entry)
                if batch.add(publisher: sample.publisherID, sequence: sample.sequence, timestamp: timestamp,
                             bytes: sample.unsafeBytes, limit: batchLimit) { continue }
            }
            flushBatch(entry)
            forward(sample, entry)
        }
    }

    /// At most this many bytes of samples in one batch message: 256 KiB (or
    /// the server's limit) amortizes nats.c's per-message work and a receiving
    /// wake-up over ~60 samples of 4 KiB (64 KiB batches made 4 KiB streams
    /// 0.70x NATS alone, 256 KiB 0.83-0.90x; BENCHMARKS.md).
    var batchLimit: Int { min(256 << 10, max(4096, room)) }

    /// Payload bytes one message may carry: the server's `max_payload`
    /// (1 MiB until connected) less room for headers; read at each drain.
    private var room = SampleExporter.room(serverLimit: 0)

    private static func room(serverLimit: Int) -> Int {
        (serverLimit > 0 ? serverLimit : 1 << 20) - WireFormat.headerAllowance
    }

    /// Sends what the batch holds (samples that arrived together: no waiting
    /// is added); a batch of one goes as a plain sample.
    private func flushBatch(_ entry: Exported) {
        guard batch.count > 0 else { return }
        defer { batch.reset() }
        if batch.count == 1 {
            batch.withFirst { publisher, sequence, timestamp, bytes in
                publish(bytes, entry, info: WireFormat.SampleInfo(origin: origin, publisher: publisher, sequence: sequence,
                                                                  timestamp: timestamp, length: bytes.count))
            }
            return
        }
        let count = UInt64(batch.count), bytes = UInt64(batch.payloadBytes)
        var header = HeaderText.Writer()
        header.hex(origin)
        header.separator()
        header.decimal(count)
        do throws(BridgeError) {
            try batch.withFrame { frame throws(BridgeError) in
                try header.withCString { value throws(BridgeError) in
                    try connection.publish(entry.template, adding: Self.batchKey, value: value, payload: frame)
                }
            }
            ServiceStatistics.add(entry.statistics.samplesOut, count)
            ServiceStatistics.add(entry.statistics.bytesOut, bytes)
        } catch {
            ServiceStatistics.add(entry.statistics.sendFailures, count)
            shared.logThrottled("'\(entry.name)' → NATS: \(error)")
        }
    }

    static let sampleKey = Array(WireFormat.Header.sample.utf8CString), batchKey = Array(WireFormat.Header.batch.utf8CString)

    private func forward(_ sample: borrowing ReceivedSample<UInt8>, _ entry: Exported) {
        if shared.isOwnPublisher(sample.publisherID) {
            ServiceStatistics.add(entry.statistics.loopsSkipped)
            return
        }
        let bytes = sample.unsafeBytes
        publish(bytes, entry, info: WireFormat.SampleInfo(origin: origin, publisher: sample.publisherID, sequence: sample.sequence,
                                                          timestamp: wallClockNanoseconds(), length: bytes.count))
    }

    /// Sends one sample: one message, or parts of at most the server's
    /// payload limit (less room for headers).
    private func publish(_ bytes: UnsafeRawBufferPointer, _ entry: Exported, info: WireFormat.SampleInfo) {
        let stats = entry.statistics
        var info = info
        let limit = max(64 << 10, room)
        do throws(BridgeError) {
            let parts = bytes.count <= limit ? 1 : (bytes.count + limit - 1) / limit
            for part in 0..<parts {
                let start = part * limit, end = min(bytes.count, start + limit)
                if parts > 1 { info.part = (part, parts, start) }
                var header = HeaderText.Writer()
                info.write(into: &header)
                try header.withCString { value throws(BridgeError) in
                    try connection.publish(entry.template, adding: Self.sampleKey, value: value,
                                           payload: UnsafeRawBufferPointer(rebasing: bytes[start..<end]))
                }
            }
            ServiceStatistics.add(stats.samplesOut)
            ServiceStatistics.add(stats.bytesOut, UInt64(bytes.count))
        } catch {
            ServiceStatistics.add(stats.sendFailures)
            shared.logThrottled("'\(entry.name)' → NATS: \(error)")
        }
    }
}
