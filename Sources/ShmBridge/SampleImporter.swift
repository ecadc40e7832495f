import Shm
import ShmSystem

/// NATS → local publish/subscribe services: one NATS subscription to every
/// sample subject under the prefix, read by the bridge's import thread; a
/// local publisher per imported service (created with the exporting
/// service's type and configuration if the service does not exist here).
///
/// What it refuses, counted per service and never published: another
/// payload type than the local service's (`type_mismatches`), a message
/// without the headers or with a length the service cannot hold
/// (`malformed`), a sample whose parts did not all arrive in order
/// (`incomplete`), and a sample whose publisher sent a sequence number not
/// newer than one already published (`duplicates`: NATS redelivery, two
/// bridges exporting the same service).
final class SampleImporter {
    final class Imported {
        let name: String
        let service: PublishSubscribeService<UInt8>
        let publisher: Publisher<UInt8>
        let statistics: ServiceStatistics
        /// The newest sequence number published, per remote publisher: the
        /// latest publisher's in `current` (consecutive samples mostly come
        /// from one), the others' in `others`.
        private var current: (publisher: UInt64, sequence: UInt64)?
        private var others: [UInt64: UInt64] = [:]

        func newest(of publisher: UInt64) -> UInt64? {
            if let current, current.publisher == publisher { return current.sequence }
            return others[publisher]
        }

        func published(_ sequence: UInt64, by publisher: UInt64) {
            if let current, current.publisher != publisher {
                others[current.publisher] = current.sequence
                others[publisher] = nil
                if others.count > 4096 { others.removeAll() } // publishers come and go
            }
            current = (publisher, sequence)
        }
        /// A sample arriving in parts: its loan and where the next part goes.
        var partial: Partial?
        init(name: String, service: PublishSubscribeService<UInt8>, publisher: Publisher<UInt8>, statistics: ServiceStatistics) {
            self.name = name
            self.service = service
            self.publisher = publisher
            self.statistics = statistics
        }
    }

    final class Partial {
        var loan: UninitializedSample<UInt8>?
        /// Where the loan's bytes are (in the publisher's pool).
        let base: UnsafeMutableRawPointer
        let publisher: UInt64, sequence: UInt64, length: Int, parts: Int
        var next = 0, filled = 0
        init(loan: consuming UninitializedSample<UInt8>, publisher: UInt64, sequence: UInt64, length: Int, parts: Int) {
            base = UnsafeMutableRawPointer(loan.unsafeBuffer.baseAddress!)
            self.loan = consume loan
            self.publisher = publisher
            self.sequence = sequence
            self.length = length
            self.parts = parts
        }
    }

    let node: Node
    let configuration: BridgeConfiguration
    let origin: UInt64
    let shared: BridgeShared
    let subscription: NatsSubscription
    var imported: [String: Imported] = [:]
    /// Services whose local type differs, with the remote type seen (retried after a while).
    var refused: [String: (PayloadType, UInt64)] = [:]

    init(node: Node, connection: NatsConnection, configuration: BridgeConfiguration, origin: UInt64,
         shared: BridgeShared) throws(BridgeError) {
        self.node = node
        self.configuration = configuration
        self.origin = origin
        self.shared = shared
        subscription = try connection.subscribe(WireFormat.allSamples(prefix: configuration.prefix))
        // Up to 64 Ki messages or 256 MiB wait here; past that NATS drops (counted).
        try subscription.setPendingLimits(messages: 65536, bytes: 256 << 20)
    }

    /// Publishes what arrives within `timeout`.
    func poll(timeout: Duration) {
        let message: NatsMessage?
        do throws(BridgeError) { message = try subscription.next(timeout: timeout) } catch {
            shared.logThrottled("NATS: \(error)")
            shared.sleep(timeout)
            return
        }
        guard let message else { return }
        handle(message)
        // Drain what is already here without waiting.
        var budget = 1024
        while budget > 0, !shared.isStopping, let more = try? subscription.next(timeout: .milliseconds(0)) {
            handle(more)
            budget -= 1
        }
    }

    /// What a subject led to: its local service, and the exact
    /// `Shm-Service` and `Shm-Type` values checked against it. Messages
    /// that repeat them skip the name match, the type decode and the
    /// lookup by name (the per-sample path parses only `Shm-Sample`).
    final class Route {
        let entry: Imported
        let subject: [UInt8], service: [UInt8], type: [UInt8]
        init(entry: Imported, subject: UnsafeBufferPointer<UInt8>, service: UnsafeBufferPointer<UInt8>,
             type: UnsafeBufferPointer<UInt8>) {
            self.entry = entry
            self.subject = Array(subject)
            self.service = Array(service)
            self.type = Array(type)
        }

        func matches(subject: UnsafeBufferPointer<UInt8>, service: UnsafeBufferPointer<UInt8>,
                     type: UnsafeBufferPointer<UInt8>) -> Bool {
            HeaderText.equals(subject, self.subject) && HeaderText.equals(service, self.service) && HeaderText.equals(type, self.type)
        }
    }

    /// Routes by subject, and the last one used.
    var routes: [String: Route] = [:]
    var lastRoute: Route?

    func handle(_ message: NatsMessage) {
        // One sample (Shm-Sample) or a batch of them (Shm-Batch "<origin>;<count>").
        let info = message.headerBytes(WireFormat.Header.sample).flatMap(WireFormat.SampleInfo.init(bytes:))
        let batch = info == nil ? message.headerBytes(WireFormat.Header.batch).flatMap(WireFormat.batchHeader(bytes:)) : nil
        // What a refused message counts as: its samples (a batch's count as claimed, but no more
        // than its payload can hold: an entry takes at least 40 bytes).
        let samples = UInt64(info != nil ? 1 : max(1, min(batch?.count ?? 1, message.data.count / 40)))
        guard let entry = route(message, origin: info?.origin ?? batch?.origin, samples: samples) else { return }
        let stats = entry.statistics
        guard let messageOrigin = info?.origin ?? batch?.origin else {
            ServiceStatistics.add(stats.malformed)
            return
        }
        if messageOrigin == origin { // our own (echo is off; belt and braces)
            ServiceStatistics.add(stats.loopsSkipped, samples)
            return
        }
        guard let info else {
            guard let count = batch?.count, let samples = WireFormat.batchEntries(message.data, count: count) else {
                ServiceStatistics.add(stats.malformed)
                return
            }
            for sample in samples {
                guard sample.bytes.count <= entry.service.payloadType.size else {
                    ServiceStatistics.add(stats.malformed)
                    continue
                }
                deliver(sample.bytes, entry, publisher: sample.publisher, sequence: sample.sequence)
            }
            return
        }
        let publisher = info.publisher, sequence = info.sequence, length = info.length
        guard length <= entry.service.payloadType.size else {
            ServiceStatistics.add(stats.malformed)
            return
        }
        let data = message.data
        if let part = info.part {
            guard data.count <= length - part.offset else {
                ServiceStatistics.add(stats.malformed)
                return
            }
            assemble(entry, part: part.index, of: part.count, offset: part.offset, data: data, publisher: publisher,
                     sequence: sequence, length: length)
            return
        }
        guard data.count == length else {
            ServiceStatistics.add(stats.malformed)
            return
        }
        deliver(data, entry, publisher: publisher, sequence: sequence)
    }

    /// The local service a message goes to, or nil (counted) when it goes
    /// nowhere: a subject or service outside the imports, no type, our own
    /// origin, a service that cannot be opened, another payload type.
    private func route(_ message: NatsMessage, origin messageOrigin: UInt64?, samples: UInt64) -> Imported? {
        let subject = message.subjectBytes
        guard let service = message.headerBytes(WireFormat.Header.service),
              let type = message.headerBytes(WireFormat.Header.type) else {
            if let name = message.header(WireFormat.Header.service), BridgeConfiguration.matches(name, configuration.imports) {
                ServiceStatistics.add(shared.statistics(for: configuration.localName(ofImported: name)).malformed)
            }
            return nil
        }
        if let last = lastRoute, last.matches(subject: subject, service: service, type: type) { return last.entry }
        let subjectText = String(decoding: subject, as: UTF8.self)
        if let known = routes[subjectText], known.matches(subject: subject, service: service, type: type) {
            lastRoute = known
            return known.entry
        }
        // First message of this subject, or its service or type changed: check everything
        // (byte for byte: String == would equate canonically equivalent names).
        guard let name = String(validating: service, as: UTF8.self), BridgeConfiguration.matches(name, configuration.imports),
              message.subjectIs(WireFormat.sampleSubject(prefix: configuration.prefix, service: name)) else { return nil }
        let local = configuration.localName(ofImported: name)
        guard let (remoteType, remoteConfig) = WireFormat.decodeType(bytes: type), messageOrigin != nil else {
            ServiceStatistics.add(shared.statistics(for: local).malformed)
            return nil
        }
        if messageOrigin == origin { // our own (echo is off; belt and braces)
            ServiceStatistics.add(shared.statistics(for: local).loopsSkipped, samples)
            return nil
        }
        guard let entry = open(local, remoteType: remoteType, remoteConfig: remoteConfig, samples: samples) else { return nil }
        guard entry.service.payloadType == remoteType else {
            ServiceStatistics.add(entry.statistics.typeMismatches, samples)
            shared.logThrottled(BridgeError.typeMismatch(service: name, local: "\(entry.service.payloadType)",
                                                         remote: "\(remoteType)").description)
            return nil
        }
        if routes.count >= 4096 { routes.removeAll() } // services come and go
        let route = Route(entry: entry, subject: subject, service: service, type: type)
        routes[subjectText] = route
        lastRoute = route
        return entry
    }

    /// Publishes a copy of `data` here unless it is a duplicate.
    private func deliver(_ data: UnsafeRawBufferPointer, _ entry: Imported, publisher: UInt64, sequence: UInt64) {
        guard isNew(entry, publisher: publisher, sequence: sequence) else { return }
        do throws(ServiceError) {
            let loan = try entry.publisher.loanUninitialized(count: data.count)
            if let source = data.baseAddress, let target = loan.unsafeBuffer.baseAddress, !data.isEmpty {
                UnsafeMutableRawPointer(target).copyMemory(from: source, byteCount: data.count)
            }
            publish(loan, entry, publisher: publisher, sequence: sequence, length: data.count)
        } catch {
            ServiceStatistics.add(entry.statistics.localDrops)
            shared.logThrottled("'\(entry.name)': \(error)")
        }
    }

    private func isNew(_ entry: Imported, publisher: UInt64, sequence: UInt64) -> Bool {
        if let newest = entry.newest(of: publisher), sequence <= newest {
            ServiceStatistics.add(entry.statistics.duplicates)
            return false
        }
        return true
    }

    private func publish(_ loan: consuming UninitializedSample<UInt8>, _ entry: Imported, publisher: UInt64, sequence: UInt64,
                         length: Int) {
        do throws(ServiceError) {
            _ = try loan.assumeInitialized().send()
            entry.published(sequence, by: publisher)
            ServiceStatistics.add(entry.statistics.samplesIn)
            ServiceStatistics.add(entry.statistics.bytesIn, UInt64(length))
        } catch {
            ServiceStatistics.add(entry.statistics.localDrops)
            shared.logThrottled("'\(entry.name)': \(error)")
        }
    }

    private func assemble(_ entry: Imported, part index: Int, of count: Int, offset: Int, data: UnsafeRawBufferPointer,
                          publisher: UInt64, sequence: UInt64, length: Int) {
        let stats = entry.statistics
        if index == 0 {
            if entry.partial != nil { ServiceStatistics.add(stats.incomplete) } // the previous one never finished
            entry.partial = nil
            guard offset == 0, isNew(entry, publisher: publisher, sequence: sequence) else { return }
            do throws(ServiceError) {
                entry.partial = Partial(loan: try entry.publisher.loanUninitialized(count: length), publisher: publisher,
                                        sequence: sequence, length: length, parts: count)
            } catch {
                ServiceStatistics.add(stats.localDrops)
                shared.logThrottled("'\(entry.name)': \(error)")
                return
            }
        }
        guard let partial = entry.partial, partial.publisher == publisher, partial.sequence == sequence,
              partial.next == index, partial.parts == count, partial.length == length, offset == partial.filled else {
            // A part missing or out of order: the sample cannot be completed.
            if entry.partial != nil || index > 0 {
                ServiceStatistics.add(stats.incomplete)
                entry.partial = nil
            }
            return
        }
        if let source = data.baseAddress, data.count > 0 {
            (partial.base + offset).copyMemory(from: source, byteCount: data.count)
        }
        partial.filled += data.count
        partial.next += 1
        guard partial.next == count else { return }
        entry.partial = nil
        guard partial.filled == length, let loan = partial.loan.take() else {
            ServiceStatistics.add(stats.malformed)
            return
        }
        publish(loan, entry, publisher: publisher, sequence: sequence, length: length)
    }

    /// The local side of `name`: opened (or created with the remote type and
    /// configuration) on first use.
    private func open(_ name: String, remoteType: PayloadType, remoteConfig: PublishSubscribeConfig?, samples: UInt64) -> Imported? {
        if let entry = imported[name] { return entry }
        let stats = shared.statistics(for: name)
        // Another bridge on this machine imports it: its copy is the one local subscribers get.
        guard shared.claim(name) else {
            ServiceStatistics.add(stats.localDrops, samples)
            return nil
        }
        if let (seen, at) = refused[name], seen == remoteType, monotonicNanoseconds() &- at < 5_000_000_000 {
            ServiceStatistics.add(stats.typeMismatches, samples)
            return nil
        }
        do throws(ServiceError) {
            let service: PublishSubscribeService<UInt8>
            if ServiceDirectory.serviceNames().contains(name) {
                service = try node.openAnyPublishSubscribe(name)
            } else {
                let config = remoteConfig ?? PublishSubscribeConfig()
                service = try node.publishSubscribe(name, rawType: remoteType, config: config)
            }
            guard service.payloadType == remoteType else {
                refused[name] = (remoteType, monotonicNanoseconds())
                ServiceStatistics.add(stats.typeMismatches, samples)
                shared.logThrottled(BridgeError.typeMismatch(service: name, local: "\(service.payloadType)",
                                                             remote: "\(remoteType)").description)
                return nil
            }
            let publisher = try service.publisher()
            publisher.sendTimeout = .seconds(1)
            shared.addOwnPublisher(publisher.portID)
            let entry = Imported(name: name, service: service, publisher: publisher, statistics: stats)
            imported[name] = entry
            return entry
        } catch {
            ServiceStatistics.add(stats.localDrops, samples)
            shared.logThrottled("import of '\(name)' failed: \(error)")
            return nil
        }
    }
}
