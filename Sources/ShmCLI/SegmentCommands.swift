import ArgumentParser
import Foundation
import Shm

/// What `ls`, `stat` and `create` report about a segment, in JSON.
struct SegmentReport: Encodable {
    let name: String
    let file: String
    let size: Int
    let dataSize: Int?
    let mode: String
    let ownerUID: UInt32
    let kind: String?
    let state: String?
    let creatorPID: Int32?
    let creatorAlive: Bool?
    let createdAt: String?
    let layoutVersion: UInt32?
    let problem: String?

    enum CodingKeys: String, CodingKey {
        case name, file, size, mode, kind, state, problem
        case dataSize = "data_size", ownerUID = "owner_uid", creatorPID = "creator_pid"
        case creatorAlive = "creator_alive", createdAt = "created_at", layoutVersion = "layout_version"
    }

    init(_ listing: SegmentListing) {
        name = listing.name.name
        file = SharedMemorySegment.directory + "/" + listing.name.fileName
        size = listing.size
        mode = octal(UInt32(listing.mode))
        ownerUID = listing.ownerUID
        let info = listing.info
        dataSize = info?.dataSize
        kind = info.map { $0.kind.description }
        state = info.map { "\($0.state)" }
        creatorPID = info?.creator.pid
        creatorAlive = info.map { $0.creator.isAlive }
        createdAt = info.map { isoTime(nanoseconds: $0.createdAt) }
        layoutVersion = info?.layoutVersion
        problem = listing.problem.map { "\($0)" }
    }
}

struct ListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ls", abstract: "List segments, nodes and services this library created.")

    @Flag(help: "Output JSON: {\"segments\": [...], \"nodes\": [...], \"services\": [...]}.") var json = false
    @Flag(name: .customLong("all-users"), help: "Include other users' segments.") var allUsers = false

    /// `shm ls --json`.
    struct Report: Encodable {
        let segments: [SegmentReport]
        let nodes: [NodeReport]
        let services: [ServiceSummary]
    }

    func run() throws {
        let listings = SegmentDirectory.list(allUsers: allUsers)
        let nodes = ServiceDirectory.nodes()
        let services = ServiceDirectory.serviceNames().map(ServiceSummary.init)
        if json {
            return try printJSON(Report(segments: listings.map(SegmentReport.init), nodes: nodes.map(NodeReport.init),
                                        services: services))
        }
        guard !listings.isEmpty else {
            StandardStreams.printLine("no segments (create one with `shm create NAME --size 1MiB`)")
            return
        }
        var table = Table("NAME", "SIZE", "MODE", "KIND", "OWNER PID", "ALIVE", "CREATED")
        table.rightAligned = [1, 4]
        for listing in listings {
            if let info = listing.info {
                table.add(listing.name.name, ByteCount.format(info.dataSize), octal(UInt32(listing.mode)),
                          info.kind.description, String(info.creator.pid), info.creator.liveness.display,
                          shortTime(nanoseconds: info.createdAt))
            } else {
                table.add(listing.name.name, ByteCount.format(listing.size), octal(UInt32(listing.mode)),
                          "?", "-", "-", "unreadable: \(listing.problem.map { "\($0)" } ?? "?")")
            }
        }
        StandardStreams.printLine(table.render())
        if !nodes.isEmpty {
            var nodeTable = Table("NODE", "PID", "ALIVE", "CREATED")
            nodeTable.rightAligned = [1]
            for node in nodes {
                nodeTable.add(node.name, String(node.process.pid), node.process.liveness.display,
                              shortTime(nanoseconds: node.createdAt))
            }
            StandardStreams.printLine("\n" + nodeTable.render())
        }
        if !services.isEmpty {
            var serviceTable = Table("SERVICE", "PATTERN", "PAYLOAD", "PORTS")
            for service in services {
                serviceTable.add(service.name, service.pattern ?? "?", service.payload ?? "?",
                                 service.problem.map { "unreadable: \($0)" } ?? service.portSummary)
            }
            StandardStreams.printLine("\n" + serviceTable.render())
        }
    }
}

/// One line of `shm ls` about a service: its pattern, payload and how many
/// live and dead ports of each kind it has.
struct ServiceSummary: Encodable {
    let name: String
    let pattern: String?
    let payload: String?
    let ports: [String: Int]
    let deadPorts: Int
    let problem: String?

    enum CodingKeys: String, CodingKey { case name, pattern, payload, ports, problem, deadPorts = "dead_ports" }

    init(_ name: String) {
        self.name = name
        do {
            let info = try ServiceDirectory.inspect(name)
            pattern = info.pattern.description
            payload = info.payload.description
            ports = Dictionary(info.ports.filter(\.alive).map { ($0.kind, 1) }, uniquingKeysWith: +)
            deadPorts = info.ports.count(where: { !$0.alive })
            problem = nil
        } catch {
            pattern = nil
            payload = nil
            ports = [:]
            deadPorts = 0
            problem = error.description
        }
    }

    /// "2 publishers, 1 subscriber (1 dead)".
    var portSummary: String {
        var parts = ports.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)\($0.value == 1 ? "" : "s")" }
        if parts.isEmpty { parts = ["no ports"] }
        return parts.joined(separator: ", ") + (deadPorts > 0 ? " (\(deadPorts) dead)" : "")
    }
}

struct CreateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create", abstract: "Create a segment that stays until `shm rm`.")

    @Argument(help: "Segment name (letters, digits, '.', '_', '-').") var name: String
    @Option(help: "Usable size, e.g. 4096, 64KiB, 1MiB, 2GiB.", transform: Size.parse) var size: Size
    @Option(help: "Permission bits in octal.") var mode: String = "0600"
    @Flag(help: "Output JSON.") var json = false

    func run() throws {
        guard let bits = UInt32(mode, radix: 8), bits <= 0o777 else {
            throw CommandFailure("invalid mode '\(mode)': give octal permission bits such as 0600 or 0644")
        }
        let segment = try reporting {
            try SharedMemorySegment.create(name, size: size.bytes, mode: mode_t(bits), lifetime: .persistent)
        }
        guard let listing = SegmentDirectory.inspect(segment.name) else { throw CommandFailure("segment vanished after create") }
        if json { return try printJSON(SegmentReport(listing)) }
        StandardStreams.printLine("created \(name): \(ByteCount.format(segment.info.dataSize)) at \(SharedMemorySegment.directory)/\(segment.name.fileName) (mode \(octal(UInt32(segment.mode))))")
    }
}

struct StatCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stat", abstract: "Show one segment's header and state.")

    @Argument(help: "Segment name.") var name: String
    @Flag(help: "Output JSON.") var json = false

    func run() throws {
        let segmentName = try reporting { try SegmentName(name) }
        guard let listing = SegmentDirectory.inspect(segmentName) else {
            throw CommandFailure("\(SegmentError.notFound(name: name))")
        }
        if json { return try printJSON(SegmentReport(listing)) }
        var lines = [
            "name:        \(name)",
            "file:        \(SharedMemorySegment.directory)/\(segmentName.fileName)",
            "object size: \(listing.size) bytes (\(ByteCount.format(listing.size)))",
            "mode:        \(octal(UInt32(listing.mode))), owner uid \(listing.ownerUID)",
        ]
        if let info = listing.info {
            lines += [
                "data size:   \(info.dataSize) bytes (\(ByteCount.format(info.dataSize))) at offset \(info.dataOffset)",
                "kind:        \(info.kind) v\(info.kindVersion), layout v\(info.layoutVersion)",
                "state:       \(info.state)",
                "creator:     pid \(info.creator.pid) (\(info.creator.liveness.rawValue)), uid \(info.creatorUID)",
                "created:     \(isoTime(nanoseconds: info.createdAt))",
            ]
        } else if let problem = listing.problem {
            lines.append("problem:     \(problem)")
        }
        StandardStreams.printLine(lines.joined(separator: "\n"))
        if listing.info == nil { throw ExitCode(2) }
    }
}

struct RemoveCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rm", abstract: "Remove segments (processes that have them mapped keep their mappings).")

    @Argument(help: "Segment names.") var names: [String]

    func run() throws {
        var failures = 0
        for name in names {
            do {
                let segmentName = try SegmentName(name)
                if let segment = try? SharedMemorySegment.open(segmentName, timeout: .milliseconds(50)) {
                    try segment.unlink() // marks the header retired, then unlinks
                } else {
                    try SharedMemorySegment.unlink(segmentName)
                }
                StandardStreams.printLine("removed \(name)")
            } catch {
                StandardStreams.printError("shm rm: \(error)")
                failures += 1
            }
        }
        if failures > 0 { throw ExitCode(1) }
    }
}

extension ProcessIdentity.Liveness {
    /// The "alive" column of `shm ls` / `shm service`.
    var display: String {
        switch self {
        case .alive: "yes"
        case .dead: "no (dead)"
        case .unknown: "unknown (lease not testable)"
        }
    }
}
