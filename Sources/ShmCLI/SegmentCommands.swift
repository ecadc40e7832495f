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
        commandName: "ls", abstract: "List the segments this library created.")

    @Flag(help: "Output JSON.") var json = false
    @Flag(name: .customLong("all-users"), help: "Include other users' segments.") var allUsers = false

    func run() throws {
        let listings = SegmentDirectory.list(allUsers: allUsers)
        if json { return try printJSON(listings.map(SegmentReport.init)) }
        guard !listings.isEmpty else {
            StandardStreams.printLine("no segments (create one with `shm create NAME --size 1MiB`)")
            return
        }
        var table = Table("NAME", "SIZE", "MODE", "KIND", "OWNER PID", "ALIVE", "CREATED")
        table.rightAligned = [1, 4]
        for listing in listings {
            if let info = listing.info {
                table.add(listing.name.name, ByteCount.format(info.dataSize), octal(UInt32(listing.mode)),
                          info.kind.description, String(info.creator.pid), info.creator.isAlive ? "yes" : "no (dead)",
                          shortTime(nanoseconds: info.createdAt))
            } else {
                table.add(listing.name.name, ByteCount.format(listing.size), octal(UInt32(listing.mode)),
                          "?", "-", "-", "unreadable: \(listing.problem.map { "\($0)" } ?? "?")")
            }
        }
        StandardStreams.printLine(table.render())
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
                "creator:     pid \(info.creator.pid) (\(info.creator.isAlive ? "alive" : "dead")), uid \(info.creatorUID)",
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
