import ShmSystem
@_spi(ShmInternals) import ShmPrimitives

/// What `shm ls`, `shm service` and `shm cleanup` see of nodes and services.
public enum ServiceDirectory {
    /// A registered node.
    public struct NodeInfo: Sendable {
        public let name: String
        public let segment: String
        public let process: ProcessIdentity
        public let alive: Bool
        public let createdAt: UInt64
    }

    /// A port registered in a service.
    public struct PortInfo: Sendable {
        /// "publisher", "subscriber", "client", "server", "notifier", "listener" or "handle".
        public let kind: String
        public let portID: UInt64
        public let process: ProcessIdentity
        public let alive: Bool
        public let registeredAt: UInt64
        /// For subscribers: samples waiting (over all publishers), lost to
        /// the overflow policy, and delivered into the inbox, since it was made.
        public var backlog: Int?
        public var lost: UInt64?
        public var delivered: UInt64?
        /// For subscribers: samples of publishers' pools this subscriber
        /// holds now — queued or borrowed, not yet handed back (a snapshot
        /// from shared-memory counters: delivered − returned, − dropped
        /// under overwrite-oldest). Their sum is the pools' chunks in use
        /// by subscribers.
        public var held: UInt64?
        /// For publishers: samples sent since the publisher was made (the
        /// highest sample sequence number in its pool).
        public var sent: UInt64?
        /// Bytes of the port's own segments in /dev/shm (its pool — every
        /// segment of it — and inbox), if any.
        public var memoryBytes: Int?
        /// For ports with a pool: its segments in /dev/shm now (more than
        /// one when it grew, `PoolAllocation`), their chunks, and the bytes
        /// the largest of those chunks hold.
        public var poolSegments: Int?
        public var poolChunks: Int?
        public var poolChunkCapacity: Int?
    }

    /// A service and its ports.
    public struct ServiceInfo: Sendable {
        public let name: String
        public let pattern: MessagingPattern
        public let payload: PayloadType
        public let settings: [(String, String)]
        public let ports: [PortInfo]
        /// Bytes reserved in /dev/shm by the service segment and its live
        /// ports' pools and inboxes (the footprint `shm service` shows).
        public var memoryBytes: Int {
            ports.reduce(serviceSegmentBytes) { $0 + ($1.memoryBytes ?? 0) }
        }
        /// Bytes of the service segment itself.
        public let serviceSegmentBytes: Int
    }

    /// Nodes of the calling user.
    public static func nodes() -> [NodeInfo] {
        SegmentDirectory.list().compactMap { listing in
            guard let info = listing.info, info.kind == Node.kind, listing.name.name.hasPrefix("node.") else { return nil }
            let nodeName = listing.name.name.dropFirst(5).split(separator: ".").dropLast(2).joined(separator: ".")
            return NodeInfo(name: nodeName, segment: listing.name.name, process: info.creator,
                            alive: info.creator.isAlive, createdAt: info.createdAt)
        }
    }

    /// Removes the registrations of dead nodes; returns their names.
    @discardableResult
    public static func removeDeadNodes() -> [String] {
        ProcessLease.removeStale()
        return nodes().filter { !$0.alive }.compactMap { node in
            guard let name = try? SegmentName(node.segment), (try? SharedMemorySegment.unlink(name)) != nil else { return nil }
            Diagnostics.notice("removed the node of a dead process", ["node": node.name, "process": node.process.description])
            Diagnostics.count("shm_nodes_reclaimed_total")
            return node.segment
        }
    }

    /// Names of the services of the calling user.
    public static func serviceNames() -> [String] {
        SegmentDirectory.list().compactMap { listing in
            guard listing.info?.kind == ServiceLayout.kind, listing.name.name.hasPrefix("svc.") else { return nil }
            return String(listing.name.name.dropFirst(4))
        }
    }

    /// The messaging pattern of a service (reads only its layout header; no
    /// port segment is mapped, unlike `inspect`).
    public static func pattern(of service: String) throws(ServiceError) -> MessagingPattern {
        let name = try ServiceName(service)
        let segment = try openReadOnly(name)
        return try ServiceLayout(opening: segment.data, name: name).config.pattern
    }

    /// Reads one service's configuration and ports (without registering).
    public static func inspect(_ service: String) throws(ServiceError) -> ServiceInfo {
        let name = try ServiceName(service)
        let segment = try openReadOnly(name)
        let layout = try ServiceLayout(opening: segment.data, name: name)
        let config = layout.config
        let (a, b) = ServiceLayout.tableNames(config.pattern)
        var settings: [(String, String)] = [("max \(a)s", "\(config.maxProducers)"), ("max \(b)s", "\(config.maxConsumers)")]
        switch config.pattern {
        case .publishSubscribe:
            settings += [("subscriber buffer", "\(config.bufferSize)"), ("history", "\(config.history)"),
                         ("max loans", "\(config.maxLoans)"), ("max borrowed", "\(config.maxBorrowed)"),
                         ("overflow", OverflowPolicy(rawValue: UInt32(truncatingIfNeeded: config.overflow))?.description ?? "?")]
        case .requestResponse:
            settings += [("request size", "\(config.requestSize)"), ("response size", "\(config.responseSize)"),
                         ("queue depth", "\(config.bufferSize)")]
        case .event:
            settings += [("max event id", "\(config.maxEventID)")]
        }
        var ports: [PortInfo] = []
        for (table, kind) in [(ServiceLayout.Table.producers, a), (.consumers, b), (.attachments, "handle")] {
            for entry in layout.entries(table) {
                var port = PortInfo(kind: kind, portID: entry.portID, process: entry.owner, alive: entry.owner.isAlive,
                                    registeredAt: entry.registeredAt)
                // What the port's segments hold in /dev/shm: a publisher's pool,
                // a subscriber's inbox, a client's or server's pool and inbox.
                // (A pool's bytes are counted below, over every segment of it.)
                let kinds = layout.segmentKinds(of: table)
                if !kinds.isEmpty {
                    port.memoryBytes = kinds.filter { $0 != .pool }.compactMap { kind in
                        (try? SegmentName(name.portSegmentName(kind, entry.portID))).flatMap(SegmentDirectory.inspect)?.size
                    }.reduce(0, +)
                }
                if kinds.contains(.pool) {
                    // Every segment of the pool: chunks, the largest chunk, and
                    // (publishers) the highest sample number in any of them.
                    var segments = 0, chunks = 0, capacity = 0, bytes = 0, sent: UInt64 = 0
                    for (number, segmentName) in name.existingPoolSegments(entry.portID) {
                        bytes += SegmentDirectory.inspect(segmentName)?.size ?? 0
                        guard let segment = try? SharedMemorySegment.open(segmentName, access: .readOnly, kind: ChunkPool.kind,
                                                                          timeout: .milliseconds(50)),
                              let pool = try? ChunkPool(segment.data, expectedPortID: entry.portID,
                                                        serviceHash: ServiceLayout.hash(service), segmentNumber: number) else { continue }
                        segments += 1
                        chunks += pool.chunkCount
                        capacity = max(capacity, pool.payloadCapacity)
                        if config.pattern == .publishSubscribe { sent = max(sent, withExtendedLifetime(segment) { pool.highestSequence() }) }
                    }
                    port.memoryBytes = (port.memoryBytes ?? 0) + bytes
                    port.poolSegments = segments
                    port.poolChunks = chunks
                    port.poolChunkCapacity = capacity
                    if config.pattern == .publishSubscribe, table == .producers { port.sent = sent }
                }
                // Queued, delivered, lost and held messages of the port's inbox:
                // a subscriber's samples, a server's requests, a client's responses.
                if kinds.contains(.inbox),
                   let inboxSegment = try? SharedMemorySegment.open(name.portSegmentName(.inbox, entry.portID), access: .readOnly,
                                                                    kind: SampleInbox.kind, timeout: .milliseconds(50)),
                   let inbox = try? SampleInbox(inboxSegment.data, expectedPortID: entry.portID, service: service) {
                    var backlog = 0, lost: UInt64 = 0, delivered: UInt64 = 0, held: UInt64 = 0
                    let overwrites = config.overflow == OverflowPolicy.overwriteOldest.rawValue
                    for i in 0..<inbox.maxPublishers where inbox.owner(of: i) != 0 {
                        if let queue = try? IndexQueue(attaching: inbox.deliveryRegion(i)) { backlog += queue.count }
                        let blockLost = inbox.lost(in: i), blockDelivered = inbox.delivered(in: i)
                        lost &+= blockLost
                        delivered &+= blockDelivered
                        // Overwrite-oldest counts a dropped (delivered) sample as lost.
                        let gone = inbox.returned(in: i) &+ (overwrites ? blockLost : 0)
                        held &+= blockDelivered >= gone ? blockDelivered - gone : 0
                    }
                    port.backlog = backlog
                    port.lost = lost
                    port.delivered = delivered
                    port.held = held
                }
                ports.append(port)
            }
        }
        return ServiceInfo(name: service, pattern: config.pattern, payload: config.payload, settings: settings, ports: ports,
                           serviceSegmentBytes: (try? SegmentName(name.segmentName)).flatMap(SegmentDirectory.inspect)?.size ?? segment.data.count)
    }

    /// Maps the service's segment read-only; a missing one is `.notFound`.
    static func openReadOnly(_ name: ServiceName) throws(ServiceError) -> SharedMemorySegment {
        do {
            return try SharedMemorySegment.open(name.segmentName, access: .readOnly, kind: ServiceLayout.kind)
        } catch .notFound {
            throw .notFound(service: name.value)
        } catch {
            throw .segment(error)
        }
    }

    /// What `cleanup` removed.
    public struct CleanupReport: Sendable {
        public var deadNodes: [String] = []
        public var deadPorts: [String] = []
        public var removedServices: [String] = []
        public var orphanSegments: [String] = []
        public var staleCreations: [String] = []
        /// Segments whose creator meant to remove them but died first.
        public var abandonedSegments: [String] = []

        public var isEmpty: Bool {
            deadNodes.isEmpty && deadPorts.isEmpty && removedServices.isEmpty && orphanSegments.isEmpty && staleCreations.isEmpty
                && abandonedSegments.isEmpty
        }
    }

    /// Removes everything dead processes left: node registrations, ports in
    /// services (and their segments), services nobody uses, port segments
    /// whose service is gone, and half-finished creations.
    public static func cleanup() -> CleanupReport {
        var report = CleanupReport()
        report.deadNodes = removeDeadNodes()
        for stale in SegmentDirectory.staleCreations() where (try? SegmentDirectory.remove(stale)) != nil {
            report.staleCreations.append(stale.fileName)
        }
        var livePorts = Set<String>()
        for service in serviceNames() {
            guard let name = try? ServiceName(service),
                  let segment = try? SharedMemorySegment.open(name.segmentName, kind: ServiceLayout.kind, timeout: .milliseconds(50)),
                  let layout = try? ServiceLayout(opening: segment.data, name: name) else { continue }
            for table in [ServiceLayout.Table.producers, .consumers] {
                layout.reclaimDeadPorts(table) { entry in
                    report.deadPorts.append("\(service): \(layout.portKind(table)) of pid \(entry.owner.pid)")
                    layout.removeSegments(ofDeparted: entry, in: table) // a pool is kept while a receiver awaits it
                }
                for kind in layout.segmentKinds(of: table) {
                    for entry in layout.entries(table) { livePorts.insert(name.portSegmentName(kind, entry.portID)) }
                }
            }
            // Pools of departed publishers that a live subscriber has not mapped yet.
            livePorts.formUnion(layout.awaitedPools())
            layout.reclaimDeadPorts(.attachments) { entry in
                report.deadPorts.append("\(service): handle of pid \(entry.owner.pid)")
            }
            if layout.entries(.attachments).isEmpty && layout.entries(.producers).isEmpty && layout.entries(.consumers).isEmpty,
               segment.unlinkIfStillLinked() {
                report.removedServices.append(service)
            }
        }
        // Port segments no live service port refers to, whose creator is dead.
        for listing in SegmentDirectory.list() {
            let file = listing.name.name
            guard file.hasPrefix("svc."), let info = listing.info, info.kind != ServiceLayout.kind,
                  !livePorts.contains(file), !livePorts.contains(ServiceName.basePoolName(of: file) ?? file),
                  !info.creator.isAlive else { continue }
            if (try? SharedMemorySegment.unlink(listing.name)) != nil {
                report.orphanSegments.append(file)
                Diagnostics.notice("removed a port segment no service refers to", ["segment": file, "process": info.creator.description])
            }
        }
        // Segments of the creator-owned lifetime whose creator died holding them.
        for listing in SegmentDirectory.list() {
            guard let info = listing.info, info.ownedByCreator, !info.creator.isAlive,
                  !listing.name.name.hasPrefix("svc."), !listing.name.name.hasPrefix("node.") else { continue }
            if (try? SharedMemorySegment.unlink(listing.name)) != nil {
                report.abandonedSegments.append(listing.name.name)
                Diagnostics.notice("removed a segment its dead creator meant to remove", ["segment": listing.name.name, "process": info.creator.description])
            }
        }
        return report
    }
}
