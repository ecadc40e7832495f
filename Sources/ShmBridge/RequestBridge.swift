import Shm
import ShmSystem
import Synchronization

/// Request/response across NATS (subjects `<prefix>.rr.<service>`).
///
/// *Imported* service (clients here, servers on another machine): the
/// bridge registers as a server of the local service; each request it takes
/// goes to NATS with the bridge's inbox as reply subject, and the responses
/// that come back (a stream until `Shm-Final`) are answered to the local
/// client. *Exported* service (servers here): the bridge takes requests for
/// it from NATS, sends them as a client of the local service and publishes
/// each response to the request's reply subject.
///
/// The local service must exist on both sides (clients and servers open or
/// create it); request type (name, size, alignment) and response size must
/// agree, else the exchange is refused on the serving side (`Shm-Error`,
/// counted as `type_mismatches`) and the client waits until its own
/// timeout, as it would for a server that does not answer. Requests and
/// responses are small typed values: one NATS message each (at most the
/// server's max_payload).
final class RequestBridge: @unchecked Sendable {
    struct Served {
        let name: String
        let service: RawRequestResponseService
        let server: ServerPort
        let subject: String
        let headers: [(String, String)]
        let statistics: ServiceStatistics
    }

    /// An exchange in flight from a local client, by the bridge's number.
    struct Outstanding {
        let service: String
        let server: ServerPort
        let clientID: UInt64, requestID: UInt64
        let at: UInt64
    }

    let node: Node
    let connection: NatsConnection
    let configuration: BridgeConfiguration
    let origin: UInt64
    let shared: BridgeShared
    let inbox: String
    let waitSet = WaitSet()
    /// Imported services whose requests this bridge takes (import thread only).
    var served: [String: Served] = [:]
    var byAttachment: [WaitSet.Attachment: String] = [:]
    var discovery = ServiceDiscovery(.requestResponse, action: "import")
    var lastDiscovery: UInt64 = 0
    var nextExchange: UInt64 = 0
    var requestBuffer: UnsafeMutableRawPointer
    var requestBufferSize = 0
    /// Exchanges waiting for responses; also touched by nats.c's inbox thread.
    let outstanding = Mutex<[UInt64: Outstanding]>([:])
    /// Client ports of exported services (nats.c's request thread only).
    var clients: [String: (service: RawRequestResponseService, client: ClientPort)] = [:]

    init(node: Node, connection: NatsConnection, configuration: BridgeConfiguration, origin: UInt64,
         shared: BridgeShared) throws(BridgeError) {
        self.node = node
        self.connection = connection
        self.configuration = configuration
        self.origin = origin
        self.shared = shared
        inbox = try connection.newInbox()
        requestBuffer = .allocate(byteCount: 1, alignment: 16)
        if !configuration.imports.isEmpty {
            try connection.subscribe(inbox) { [unowned self] message in self.answer(message) }
        }
        if !configuration.exports.isEmpty {
            try connection.subscribe(WireFormat.allRequests(prefix: configuration.prefix)) { [unowned self] message in
                self.serve(message)
            }
        }
    }

    deinit { requestBuffer.deallocate() }

    // MARK: Imported services: local clients, remote servers

    /// Registers as a server of matching local services not served yet.
    func discover() {
        guard !configuration.imports.isEmpty else { return }
        let configuration = self.configuration, shared = self.shared
        discovery.discover(wants: { configuration.remoteName(ofLocal: $0) != nil }, handled: { served[$0] != nil },
                           log: { shared.log($0) }) { (name: String) throws(ServiceError) -> ServiceDiscovery.Outcome in
            guard let remote = configuration.remoteName(ofLocal: name) else { return .refused }
            guard shared.claim(name) else { return .deferred }
            let service = try node.openAnyRequestResponse(name)
            let server = try service.serverPort(waitStrategy: .default)
            let type = service.requestType
            let entry = Served(
                name: name, service: service, server: server,
                subject: WireFormat.requestSubject(prefix: configuration.prefix, service: remote),
                headers: [(WireFormat.Header.service, remote), (WireFormat.Header.type, WireFormat.typeHeader(type, config: nil)),
                          (WireFormat.Header.responseSize, String(service.responseSize)),
                          (WireFormat.Header.origin, WireFormat.hex(origin))],
                statistics: shared.statistics(for: name))
            served[name] = entry
            byAttachment[waitSet.attach(server, keepAlive: service)] = name
            if service.requestSize > requestBufferSize {
                requestBuffer.deallocate()
                requestBuffer = .allocate(byteCount: max(1, service.requestSize), alignment: 16)
                requestBufferSize = service.requestSize
            }
            return .taken
        }
    }

    /// Waits up to `timeout` for local requests and forwards them; looks
    /// for new matching services every second.
    func poll(timeout: Duration) {
        let now = monotonicNanoseconds()
        if now &- lastDiscovery >= 1_000_000_000 {
            discover()
            lastDiscovery = now
        }
        guard waitSet.count > 0 else {
            shared.sleep(timeout)
            return
        }
        for attachment in (try? waitSet.wait(timeout: timeout)) ?? [] {
            guard let name = byAttachment[attachment], let entry = served[name] else { continue }
            var budget = 256
            while budget > 0, !shared.isStopping {
                budget -= 1
                let got: (clientID: UInt64, requestID: UInt64, length: Int)?
                do throws(ServiceError) {
                    got = try entry.server.receive(into: requestBuffer, timeout: .zero, throwOnTimeout: false)
                } catch {
                    shared.logThrottled("'\(name)': \(error)")
                    break
                }
                guard let got else { break }
                forward(entry, clientID: got.clientID, requestID: got.requestID, length: got.length)
            }
        }
        expire()
    }

    private func forward(_ entry: Served, clientID: UInt64, requestID: UInt64, length: Int) {
        nextExchange &+= 1
        let exchange = nextExchange
        outstanding.withLock {
            $0[exchange] = Outstanding(service: entry.name, server: entry.server, clientID: clientID, requestID: requestID,
                                       at: monotonicNanoseconds())
        }
        do throws(BridgeError) {
            try connection.publish(entry.subject, reply: inbox, headers: entry.headers + [(WireFormat.Header.request, String(exchange))],
                                   payload: UnsafeRawBufferPointer(start: requestBuffer, count: length))
            ServiceStatistics.add(entry.statistics.samplesOut)
            ServiceStatistics.add(entry.statistics.bytesOut, UInt64(length))
        } catch {
            _ = outstanding.withLock { $0.removeValue(forKey: exchange) }
            ServiceStatistics.add(entry.statistics.sendFailures)
            shared.logThrottled("'\(entry.name)' → NATS: \(error)")
        }
    }

    /// A response from the serving side (nats.c's inbox thread).
    private func answer(_ message: NatsMessage) {
        guard let exchange = message.header(WireFormat.Header.request).flatMap({ UInt64($0) }) else { return }
        let final = message.header(WireFormat.Header.final) == "1"
        let failure = message.header(WireFormat.Header.error)
        let found = outstanding.withLock { table -> Outstanding? in
            guard let entry = table[exchange] else { return nil }
            if final || failure != nil { table[exchange] = nil }
            return entry
        }
        guard let found else { return } // expired, or not ours
        let stats = shared.statistics(for: found.service)
        if let failure {
            ServiceStatistics.add(stats.localDrops)
            shared.logThrottled("'\(found.service)': the serving side refused a request: \(failure)")
            return
        }
        let data = message.data
        guard data.count <= found.server.responseSize else {
            ServiceStatistics.add(stats.malformed)
            return
        }
        do throws(ServiceError) {
            _ = try found.server.respond(payload: data.baseAddress ?? UnsafeRawPointer(requestBuffer), length: data.count, final: final,
                                         requestID: found.requestID, clientID: found.clientID, timeout: .seconds(1))
            ServiceStatistics.add(stats.samplesIn)
            ServiceStatistics.add(stats.bytesIn, UInt64(data.count))
        } catch {
            ServiceStatistics.add(stats.localDrops)
            shared.logThrottled("'\(found.service)': \(error)")
        }
    }

    /// Forgets exchanges without a final response for a minute.
    private func expire() {
        let now = monotonicNanoseconds()
        outstanding.withLock { table in
            if table.count > 0 { table = table.filter { now &- $0.value.at < 60_000_000_000 } }
        }
    }

    // MARK: Exported services: remote clients, local servers

    /// A request from another machine (nats.c's request thread): asks the
    /// local service and publishes every response to the reply subject.
    private func serve(_ message: NatsMessage) {
        guard let name = message.header(WireFormat.Header.service), BridgeConfiguration.matches(name, configuration.exports),
              message.subjectIs(WireFormat.requestSubject(prefix: configuration.prefix, service: name)),
              let reply = message.reply, let exchange = message.header(WireFormat.Header.request) else { return }
        let stats = shared.statistics(for: name)
        func refuse(_ why: String) {
            try? connection.publish(reply, headers: [(WireFormat.Header.request, exchange), (WireFormat.Header.error, why)],
                                    payload: UnsafeRawBufferPointer(start: nil, count: 0))
        }
        guard let (remoteType, _) = message.header(WireFormat.Header.type).flatMap(WireFormat.decodeType),
              let responseSize = message.header(WireFormat.Header.responseSize).flatMap({ Int($0) }) else {
            ServiceStatistics.add(stats.malformed)
            refuse("malformed request headers")
            return
        }
        let local: (service: RawRequestResponseService, client: ClientPort)
        if let existing = clients[name] {
            local = existing
        } else {
            // Another bridge on this machine serves it: that one answers (a
            // refusal from us would race its answer to the requester).
            guard shared.claim(name) else { return }
            do throws(ServiceError) {
                let service = try node.openAnyRequestResponse(name)
                local = (service, try service.clientPort(waitStrategy: .default))
                clients[name] = local
            } catch {
                ServiceStatistics.add(stats.localDrops)
                refuse("\(error)")
                return
            }
        }
        guard local.service.requestType == remoteType, local.service.responseSize == responseSize else {
            ServiceStatistics.add(stats.typeMismatches)
            let why = BridgeError.typeMismatch(service: name, local: "\(local.service.requestType) → \(local.service.responseSize) bytes",
                                               remote: "\(remoteType) → \(responseSize) bytes").description
            shared.logThrottled(why)
            refuse(why)
            return
        }
        let data = message.data
        guard data.count <= local.service.requestSize else {
            ServiceStatistics.add(stats.malformed)
            refuse("a request of \(data.count) bytes, at most \(local.service.requestSize)")
            return
        }
        ServiceStatistics.add(stats.samplesIn)
        ServiceStatistics.add(stats.bytesIn, UInt64(data.count))
        let response = UnsafeMutableRawPointer.allocate(byteCount: max(1, local.service.responseSize), alignment: 16)
        defer { response.deallocate() }
        do throws(ServiceError) {
            let id = try local.client.send(payload: data.baseAddress ?? UnsafeRawPointer(response), length: data.count,
                                           timeout: .seconds(1))
            while true {
                let (final, length) = try local.client.next(for: id, into: response, timeout: .seconds(30))
                try? connection.publish(reply, headers: [(WireFormat.Header.request, exchange),
                                                         (WireFormat.Header.final, final ? "1" : "0")],
                                        payload: UnsafeRawBufferPointer(start: response, count: length))
                ServiceStatistics.add(stats.samplesOut)
                ServiceStatistics.add(stats.bytesOut, UInt64(length))
                if final { break }
            }
        } catch {
            ServiceStatistics.add(stats.localDrops)
            shared.logThrottled("'\(name)': \(error)")
            refuse("\(error)")
        }
    }
}
