import ShmSystem
@_spi(ShmInternals) import ShmPrimitives

/// The messaging pattern of a service.
public enum MessagingPattern: UInt64, Sendable, CustomStringConvertible {
    case publishSubscribe = 1
    case requestResponse = 2
    case event = 3

    public var description: String {
        switch self {
        case .publishSubscribe: "publish/subscribe"
        case .requestResponse: "request/response"
        case .event: "event"
        }
    }
}

/// The shared part of a service: its static configuration and the tables
/// of ports (publishers/subscribers, clients/servers, notifiers/listeners)
/// that processes register in. It lives in segment `svc.<name>`.
///
/// ```text
/// offset  contents
///    0    header: magic "SVCE", version, 16 configuration fields, checksum
///  256    payload type name: UInt32 length + 124 bytes (hash in the header)
///  384    version: UInt64, bumped whenever a port comes or goes
///  512    producers table: maxProducers slots of 64 bytes (publishers / clients / notifiers)
///   …     consumers table: maxConsumers slots of 64 bytes (subscribers / servers / listeners)
///   …     attachments table: 64 slots of 64 bytes: open service handles (attachments)
///   …     pattern area (events: counters and a futex event)
///
/// slot: +0 owner UInt64 (packed ProcessIdentity; 0 free), +8 portID UInt64
///       (0 while being registered), +16 registered-at ns, +24 node hash
/// ```
///
/// A process claims a slot with a CAS on `owner`, then writes `portID`,
/// then bumps `version`. Anyone who finds a slot whose owner is dead may
/// take it back (CAS owner → 0) and removes the port's segment.
package struct ServiceLayout: @unchecked Sendable {
    static let magic = SegmentKind("SVCE")
    /// 2: request/response sends through per-port pools and inboxes (a
    /// request queue in the pattern area before).
    static let layoutVersion: UInt32 = 2
    static let kind = SegmentKind("SVCE")
    static let fieldCount = 16
    static let typeNameOffset = 256, typeNameCapacity = 124
    /// The name's bytes, after its UInt32 length at `typeNameOffset`.
    static let typeNameBytesOffset = typeNameOffset + 4
    package static let versionOffset = 384, portsOffset = 392
    static let tablesOffset = 512
    static let slotSize = 64
    static let attachmentSlots = 64

    /// The configuration fields, in header order.
    package struct Config: Equatable {
        var pattern: MessagingPattern
        var payload: PayloadType
        var maxProducers: Int
        var maxConsumers: Int
        var bufferSize: Int
        var history: Int
        var maxLoans: Int
        var maxBorrowed: Int
        var overflow: UInt64
        var requestSize: Int
        var responseSize: Int
        var maxEventID: Int

        package init(pattern: MessagingPattern, payload: PayloadType, maxProducers: Int, maxConsumers: Int, bufferSize: Int, history: Int,
                     maxLoans: Int, maxBorrowed: Int, overflow: UInt64, requestSize: Int, responseSize: Int, maxEventID: Int) {
            self.pattern = pattern
            self.payload = payload
            self.maxProducers = maxProducers
            self.maxConsumers = maxConsumers
            self.bufferSize = bufferSize
            self.history = history
            self.maxLoans = maxLoans
            self.maxBorrowed = maxBorrowed
            self.overflow = overflow
            self.requestSize = requestSize
            self.responseSize = responseSize
            self.maxEventID = maxEventID
        }

        var fields: [UInt64] {
            [pattern.rawValue, UInt64(payload.size), UInt64(payload.alignment), ServiceLayout.hash(payload.name),
             UInt64(maxProducers), UInt64(maxConsumers), UInt64(bufferSize), UInt64(history), UInt64(maxLoans), UInt64(maxBorrowed),
             overflow, UInt64(requestSize), UInt64(responseSize), UInt64(maxEventID), 0, 0]
        }

        /// Human-readable differences from `other` (what exists) for errors.
        func differences(from existing: Config) -> [String] {
            var out: [String] = []
            func compare<T: Equatable>(_ what: String, _ mine: T, _ theirs: T) {
                if mine != theirs { out.append("\(what): requested \(mine), service has \(theirs)") }
            }
            compare("pattern", pattern.description, existing.pattern.description)
            compare("payload type", payload.description, existing.payload.description)
            let (a, b) = ServiceLayout.tableNames(pattern)
            compare("max \(a)s", maxProducers, existing.maxProducers)
            compare("max \(b)s", maxConsumers, existing.maxConsumers)
            compare("buffer size", bufferSize, existing.bufferSize)
            compare("history size", history, existing.history)
            compare("max loans", maxLoans, existing.maxLoans)
            compare("max borrowed", maxBorrowed, existing.maxBorrowed)
            compare("overflow policy", overflow, existing.overflow)
            compare("request size", requestSize, existing.requestSize)
            compare("response size", responseSize, existing.responseSize)
            compare("max event id", maxEventID, existing.maxEventID)
            return out
        }
    }

    static func tableNames(_ pattern: MessagingPattern) -> (String, String) {
        switch pattern {
        case .publishSubscribe: ("publisher", "subscriber")
        case .requestResponse: ("client", "server")
        case .event: ("notifier", "listener")
        }
    }

    /// FNV-1a 64 of a string (payload type names).
    static func hash(_ text: String) -> UInt64 {
        FNV1a.hash(text)
    }

    static func patternAreaSize(_ config: Config) -> Int {
        switch config.pattern {
        case .event: SharedEvent.size + 8 * config.maxEventID
        case .requestResponse, .publishSubscribe: 0
        }
    }

    /// The pattern area starts on a 128-byte line after the tables.
    static func patternAreaStart(_ config: Config) -> Int {
        (tablesOffset + (config.maxProducers + config.maxConsumers + attachmentSlots) * slotSize + 127) & ~127
    }

    package static func size(for config: Config) -> Int {
        patternAreaStart(config) + patternAreaSize(config)
    }

    let data: MappedBytes
    let config: Config
    let name: ServiceName

    var patternArea: MappedBytes {
        let start = ServiceLayout.patternAreaStart(config)
        return data.view(start..<start + ServiceLayout.patternAreaSize(config))
    }

    /// Writes a fresh layout into `data` (inside the segment initializer).
    package static func initialize(_ data: MappedBytes, config: Config) {
        data.view(0..<size(for: config)).fill(with: 0)
        LayoutHeader.write(data.unsafeBaseAddress, magic: magic, version: layoutVersion, fields: config.fields)
        let nameBytes = Array(config.payload.name.utf8.prefix(typeNameCapacity))
        data.storeBytes(of: UInt32(nameBytes.count), toByteOffset: typeNameOffset, as: UInt32.self)
        data.write(nameBytes, at: typeNameBytesOffset)
        let start = patternAreaStart(config)
        switch config.pattern {
        case .event:
            _ = try? SharedEvent.initialize(data.view(start..<start + SharedEvent.size))
        case .requestResponse, .publishSubscribe:
            break
        }
    }

    /// Reads and validates the layout of an existing service.
    package init(opening data: MappedBytes, name: ServiceName) throws(ServiceError) {
        let fields: [UInt64]
        do {
            fields = try LayoutHeader.read(data, magic: ServiceLayout.magic, version: ServiceLayout.layoutVersion,
                                           count: ServiceLayout.fieldCount, what: "service")
        } catch {
            throw .corrupt(service: name.value, reason: error.description)
        }
        guard let pattern = MessagingPattern(rawValue: fields[0]) else {
            throw .corrupt(service: name.value, reason: "unknown messaging pattern \(fields[0])")
        }
        let nameLength = Int(data.load(fromByteOffset: ServiceLayout.typeNameOffset, as: UInt32.self))
        guard nameLength <= ServiceLayout.typeNameCapacity else {
            throw .corrupt(service: name.value, reason: "payload type name length \(nameLength)")
        }
        let typeName = String(decoding: data.read(ServiceLayout.typeNameBytesOffset ..< ServiceLayout.typeNameBytesOffset + nameLength), as: UTF8.self)
        guard ServiceLayout.hash(typeName) == fields[3] else {
            throw .corrupt(service: name.value, reason: "payload type name does not match its hash")
        }
        func int(_ i: Int, max: UInt64) throws(ServiceError) -> Int {
            guard fields[i] <= max else { throw .corrupt(service: name.value, reason: "configuration field \(i) is \(fields[i])") }
            return Int(fields[i])
        }
        let config = Config(
            pattern: pattern,
            payload: PayloadType(name: typeName, size: try int(1, max: 1 << 34), alignment: try int(2, max: 4096)),
            maxProducers: try int(4, max: 4096), maxConsumers: try int(5, max: 4096), bufferSize: try int(6, max: 1 << 20),
            history: try int(7, max: 1 << 20), maxLoans: try int(8, max: 1 << 20), maxBorrowed: try int(9, max: 1 << 20),
            overflow: fields[10], requestSize: try int(11, max: 1 << 30), responseSize: try int(12, max: 1 << 30),
            maxEventID: try int(13, max: 1 << 20))
        guard ServiceLayout.size(for: config) <= data.count else {
            throw .corrupt(service: name.value, reason: "segment of \(data.count) bytes is smaller than its tables")
        }
        self.data = data
        self.config = config
        self.name = name
    }

    // MARK: Slots

    /// The port tables: the side that sends into the service (publishers,
    /// clients, notifiers), the side that receives from it (subscribers,
    /// servers, listeners), and open service handles.
    package enum Table { case producers, consumers, attachments }

    /// The port table `table` (slots of 64 bytes, see `PortTable`).
    func portTable(_ table: Table) -> PortTable {
        let first: Int
        switch table {
        case .producers: first = 0
        case .consumers: first = config.maxProducers
        case .attachments: first = config.maxProducers + config.maxConsumers
        }
        return PortTable(base: data.unsafeBaseAddress + ServiceLayout.tablesOffset + first * PortTable.slotSize,
                         count: count(table), version: versionCounter)
    }

    func count(_ table: Table) -> Int {
        switch table {
        case .producers: config.maxProducers
        case .consumers: config.maxConsumers
        case .attachments: ServiceLayout.attachmentSlots
        }
    }

    /// A registered port as seen by a reader of the table.
    package typealias PortEntry = PortTable.Entry

    /// Registered ports of `table` (slots whose registration is complete).
    package func entries(_ table: Table) -> [PortEntry] { portTable(table).entries() }

    /// Claims a free slot of `table` for this process, taking over slots of
    /// dead processes; free slots in `avoiding` are taken only when no other
    /// is free. Returns the slot index.
    func register(_ table: Table, portID: UInt64, nodeHash: UInt64, avoiding: Set<Int> = [],
                  onDeadPort: (PortEntry) -> Void) throws(ServiceError) -> Int {
        let order = (0..<count(table)).filter { !avoiding.contains($0) } + (0..<count(table)).filter { avoiding.contains($0) }
        for _ in 0..<2 {
            if let index = portTable(table).claim(portID: portID, nodeHash: nodeHash, order: order) { return index }
            // Full: reclaim dead ports, then try once more.
            if reclaimDeadPorts(table, onDeadPort: onDeadPort) == 0 { break }
        }
        let (a, b) = ServiceLayout.tableNames(config.pattern)
        throw .tooManyPorts(service: name.value, kind: table == .producers ? a : table == .consumers ? b : "attachment", maximum: count(table))
    }

    /// Frees this process's slot.
    func unregister(_ table: Table, index: Int, portID: UInt64) {
        portTable(table).release(index: index, portID: portID)
    }

    /// Takes back the slots of `table` whose owners are dead, calling
    /// `onDeadPort` for each (to remove its segment), and tells the operator.
    /// Returns how many.
    @discardableResult
    func reclaimDeadPorts(_ table: Table, onDeadPort: (PortEntry) -> Void) -> Int {
        portTable(table).reclaimDead { entry in
            onDeadPort(entry)
            let kind = portKind(table)
            Diagnostics.notice("reclaimed the port of a dead process",
                               ["service": name.value, "port": kind, "process": entry.owner.description])
            Diagnostics.count("shm_ports_reclaimed_total", [("service", name.value), ("kind", kind)])
        }
    }

    /// The segments a port of `table` owns (notifiers, listeners and
    /// handles own none): publishers a pool, subscribers an inbox, clients
    /// and servers one of each (requests go from a client's pool to a
    /// server's inbox, responses from a server's pool to a client's inbox).
    func segmentKinds(of table: Table) -> [PortSegmentKind] {
        switch (config.pattern, table) {
        case (.publishSubscribe, .producers): [.pool]
        case (.publishSubscribe, .consumers): [.inbox]
        case (.requestResponse, .producers), (.requestResponse, .consumers): [.pool, .inbox]
        default: []
        }
    }

    /// Removes what a port of `table` that is gone (dead, reclaimed) owned:
    /// its inbox at once, its pool once no receiver awaits it (DepartedPools.swift).
    /// A departed receiver no longer awaits anything: pools of departed
    /// senders it was the last to wait for go with it.
    func removeSegments(ofDeparted entry: PortEntry, in table: Table) {
        guard entry.portID != 0 else { return }
        for kind in segmentKinds(of: table) {
            if kind == .pool {
                removeDepartedPoolIfUnawaited(entry.portID, direction: .sending(from: table))
            } else if let segmentName = try? SegmentName(name.portSegmentName(kind, entry.portID)) {
                // The senders whose blocks it held, read before it goes.
                var senders: [UInt64] = []
                if let segment = try? SharedMemorySegment.open(segmentName, access: .readOnly, kind: SampleInbox.kind,
                                                              timeout: .milliseconds(50)),
                   let inbox = try? SampleInbox(segment.data, expectedPortID: entry.portID) {
                    senders = withExtendedLifetime(segment) { inbox.owners }
                }
                try? SharedMemorySegment.unlink(segmentName)
                let direction: PortDirection = table == .consumers ? .toConsumers : .toProducers
                for sender in senders { removeDepartedPoolIfUnawaited(sender, direction: direction) }
            }
        }
    }

    /// What a slot of `table` holds, in words ("publisher", "client", …, "handle").
    func portKind(_ table: Table) -> String {
        let (a, b) = ServiceLayout.tableNames(config.pattern)
        switch table {
        case .producers: return a
        case .consumers: return b
        case .attachments: return "handle"
        }
    }

    /// The version of the port tables: bumped whenever a port comes or goes.
    var versionCounter: PortTable.Version { PortTable.Version(data.unsafeBaseAddress + ServiceLayout.versionOffset) }

    func bumpVersion() { versionCounter.bump() }

    @inline(__always)
    var version: UInt64 { versionCounter.current }

    /// Live attachments (open service handles).
    var liveAttachments: Int { entries(.attachments).filter { $0.owner.isAlive }.count }
}

extension ServiceLayout {
    /// The stored configuration of the existing service `service`, which
    /// must be of `pattern` (`openAny…`: tools and the NATS bridge open a
    /// service whatever its types by reading what it was created with).
    package static func existingConfig(of service: String, pattern: MessagingPattern,
                                       requested: String) throws(ServiceError) -> (ServiceName, Config) {
        let name = try ServiceName(service)
        let segment = try ServiceDirectory.openReadOnly(name)
        let config = try ServiceLayout(opening: segment.data, name: name).config
        guard config.pattern == pattern else {
            throw .incompatible(service: service, differences: ["pattern: requested \(requested), service has \(config.pattern)"])
        }
        return (name, config)
    }
}
