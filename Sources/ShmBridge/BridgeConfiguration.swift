import Shm

/// What a bridge forwards, and where.
///
/// Services are chosen by name patterns: `*` matches any run of characters
/// (dots included), anything else itself. *Exported* services go from this
/// machine's shared memory to NATS; *imported* ones from NATS into this
/// machine's shared memory. A service both exported and imported is
/// bridged both ways (samples that came from NATS are never sent back).
public struct BridgeConfiguration: Sendable, Equatable {
    /// NATS server URL(s), comma-separated: "nats://127.0.0.1:4222".
    public var url: String
    /// The first subject token(s) of every message (see `WireFormat`).
    public var prefix: String
    public var exports: [String]
    public var imports: [String]
    /// The bridge's node name (`shm ls`) and NATS connection name.
    public var name: String
    /// Imported services are named `<importPrefix><remote name>` here
    /// ("site-b." keeps two sites' services of one name apart); "" by default.
    public var importPrefix: String
    /// Write every message to the socket at once (lowest latency, a syscall
    /// per message) rather than letting nats.c batch writes (up to ~1 ms).
    public var sendImmediately: Bool
    /// Samples of one service that are waiting together leave as one NATS
    /// message (`WireFormat`'s batch: per-sample metadata in the payload,
    /// not in headers); a sample alone goes as itself, with its headers.
    /// Adds no waiting; raises throughput for small samples. On by default.
    public var batching: Bool
    /// Logs mirrored into JetStream streams or built from them.
    public var logs: [LogReplication]
    /// How the export thread waits for local samples. The default
    /// (spin-then-park) costs nothing while idle but a wake-up (7–33 µs on
    /// a VM whose idle vCPUs halt) for a sample after a pause; `.yielding`
    /// takes that wake-up off the path at the price of a polling thread
    /// (it gives way to any runnable thread); `.busySpin` holds a core.
    public var exportWait: WaitStrategy

    public init(url: String = "nats://127.0.0.1:4222", prefix: String = WireFormat.defaultPrefix,
                exports: [String] = [], imports: [String] = [], name: String = "bridge", importPrefix: String = "",
                sendImmediately: Bool = false, batching: Bool = true, logs: [LogReplication] = [],
                exportWait: WaitStrategy = .default) {
        self.url = url
        self.prefix = prefix
        self.exports = exports
        self.imports = imports
        self.name = name
        self.importPrefix = importPrefix
        self.sendImmediately = sendImmediately
        self.logs = logs
        self.batching = batching
        self.exportWait = exportWait
    }

    /// The local name of imported service `remote`.
    func localName(ofImported remote: String) -> String { importPrefix + remote }

    /// The remote name of local service `local` if it is an imported one.
    func remoteName(ofLocal local: String) -> String? {
        guard local.hasPrefix(importPrefix) else { return nil }
        let remote = String(local.dropFirst(importPrefix.count))
        return !remote.isEmpty && BridgeConfiguration.matches(remote, imports) ? remote : nil
    }

    /// Throws `.invalidConfiguration` naming the first problem.
    public func validate() throws(BridgeError) {
        guard !exports.isEmpty || !imports.isEmpty || !logs.isEmpty else {
            throw .invalidConfiguration("nothing to export, import, mirror or replicate")
        }
        for log in logs { try log.validate() }
        let tokens = prefix.split(separator: ".", omittingEmptySubsequences: false)
        guard !prefix.isEmpty, tokens.allSatisfy({ !$0.isEmpty && !$0.contains(where: { " *>\t".contains($0) }) }) else {
            throw .invalidConfiguration("prefix '\(prefix)': dot-separated NATS subject tokens without spaces, '*' or '>'")
        }
        for pattern in exports + imports where pattern.isEmpty || pattern.contains(where: { " >\t".contains($0) }) {
            throw .invalidConfiguration("service pattern '\(pattern)'")
        }
        if !importPrefix.isEmpty, (try? ServiceName(importPrefix + "x")) == nil {
            throw .invalidConfiguration("import prefix '\(importPrefix)': service-name characters only")
        }
    }

    static func matches(_ name: String, _ patterns: [String]) -> Bool {
        patterns.contains { glob($0[...], name[...]) }
    }

    /// `*` matches any run of characters.
    static func glob(_ pattern: Substring, _ text: Substring) -> Bool {
        guard let star = pattern.firstIndex(of: "*") else { return pattern == text }
        let head = pattern[..<star], rest = pattern[pattern.index(after: star)...]
        guard text.hasPrefix(head) else { return false }
        var remainder = text.dropFirst(head.count)
        while true {
            if glob(rest, remainder) { return true }
            if remainder.isEmpty { return false }
            remainder = remainder.dropFirst()
        }
    }
}
