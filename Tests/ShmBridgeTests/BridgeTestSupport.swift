#if canImport(Glibc)
import Glibc
#endif
import Shm
import ShmTestSupport

/// A `nats-server` of the test's own on a loopback port (skipped, with the
/// reason printed, where the binary is missing).
final class NatsServerProcess {
    static let binary: String? = ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"]
        .first { access($0, X_OK) == 0 }

    let port: Int
    let configPath: String
    var process: ChildProcess?
    var url: String { "nats://127.0.0.1:\(port)" }

    /// Starts the server (with JetStream, storing under a scratch directory,
    /// if asked); nil (after printing why) if it cannot run here.
    static func start(jetStream: Bool = false, _ test: String = #function) throws -> NatsServerProcess? {
        guard let binary else {
            print("skipped \(test): no nats-server (apt-get install nats-server)")
            return nil
        }
        for _ in 0..<20 {
            let server = NatsServerProcess(port: Int.random(in: 20000...60000), jetStream: jetStream)
            if try server.launch(binary) { return server }
        }
        throw TestFailure("nats-server did not start on any of 20 ports")
    }

    let storeDirectory: String?

    private init(port: Int, jetStream: Bool) {
        self.port = port
        configPath = TestSupport.temporaryPath("nats") + ".conf"
        storeDirectory = jetStream ? TestSupport.temporaryPath("jetstream") : nil
        // Slow consumers get room: frames of several MB queue up while the
        // importing side writes them to shared memory.
        var config = "listen: 127.0.0.1:\(port)\nmax_pending: 1GB\nwrite_deadline: \"30s\"\n"
        if let storeDirectory { config += "jetstream { store_dir: \"\(storeDirectory)\" }\n" }
        let fd = open(configPath, O_CREAT | O_WRONLY | O_TRUNC, 0o600)
        _ = config.withCString { write(fd, $0, strlen($0)) }
        close(fd)
    }

    deinit {
        stop()
        unlink(configPath)
        if let storeDirectory { _ = try? ChildProcess.spawn("/bin/rm", arguments: ["-rf", storeDirectory]).wait(timeout: .seconds(30)) }
    }

    /// Starts (or restarts) the server on the same port; false if the port was taken.
    @discardableResult
    func launch(_ binary: String? = NatsServerProcess.binary) throws -> Bool {
        let child = try ChildProcess.spawn(binary!, arguments: ["-c", configPath], captureOutput: true)
        let ready = TestSupport.eventually(.seconds(10)) {
            if (try? child.wait(timeout: .zero)) != nil { return true }
            return Self.accepts(port)
        }
        if (try? child.wait(timeout: .zero)) != nil || !ready {
            child.kill()
            _ = try? child.wait(timeout: .seconds(5))
            return false
        }
        process = child
        return true
    }

    func stop() {
        process?.kill(SIGTERM)
        _ = try? process?.wait(timeout: .seconds(10))
        process?.kill()
        process = nil
    }

    static func accepts(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }
}

/// A second "machine" on this one: a mount namespace with its own tmpfs at
/// /dev/shm, so nothing in shared memory is shared with the test process
/// (the first machine). Commands run inside with `nsenter`.
final class IsolatedHost {
    static let unavailable: String? = {
        guard getuid() == 0 else { return "needs root for unshare -m" }
        guard access("/usr/bin/unshare", X_OK) == 0, access("/usr/bin/nsenter", X_OK) == 0 else { return "no unshare/nsenter" }
        return nil
    }()

    let holder: ChildProcess

    /// Nil (after printing why) where mount namespaces cannot be made.
    static func make(_ test: String = #function) throws -> IsolatedHost? {
        if let reason = unavailable {
            print("skipped \(test): \(reason)")
            return nil
        }
        let holder = try ChildProcess.spawn("/usr/bin/unshare", arguments: [
            "-m", "--propagation", "private", "--", "/bin/sh", "-c",
            "mount -t tmpfs -o size=2g,mode=1777 tmpfs /dev/shm && echo ready && exec sleep 3600",
        ], captureOutput: true)
        guard try holder.readLine(timeout: .seconds(20)) == "ready" else {
            holder.kill()
            _ = try? holder.wait(timeout: .seconds(5))
            print("skipped \(test): cannot mount a tmpfs in a new mount namespace: \(holder.errorText)")
            return nil
        }
        return IsolatedHost(holder: holder)
    }

    private init(holder: ChildProcess) { self.holder = holder }

    deinit {
        holder.kill()
        _ = try? holder.wait(timeout: .seconds(5))
    }

    /// Starts `executable` inside this host's mount namespace.
    func spawn(_ executable: String, _ arguments: [String]) throws -> ChildProcess {
        try ChildProcess.spawn("/usr/bin/nsenter", arguments: ["-t", String(holder.pid), "-m", "--", executable] + arguments,
                               captureOutput: true)
    }

    /// Runs `executable` inside to completion (bounded).
    func run(_ executable: String, _ arguments: [String], timeout: Duration = .seconds(30)) throws -> (ExitStatus, String, String) {
        let child = try spawn(executable, arguments)
        let status = try child.wait(timeout: timeout)
        return (status, child.outputText, child.errorText)
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A running `shm bridge` and what it printed.
final class BridgeProcess {
    let process: ChildProcess

    init(_ process: ChildProcess) throws {
        self.process = process
        guard let line = try process.readLine(timeout: .seconds(30)), line.hasPrefix("ready") else {
            process.kill()
            _ = try? process.wait(timeout: .seconds(5))
            throw TestFailure("the bridge did not start: \(process.outputText) \(process.errorText)")
        }
    }

    /// Stops it (SIGTERM) and returns its counters per service.
    func stop() throws -> [String: [String: UInt64]] {
        process.kill(SIGTERM)
        _ = try process.wait(timeout: .seconds(20))
        var counters: [String: [String: UInt64]] = [:]
        for line in process.outputText.split(separator: "\n") where line.contains(": out=") {
            let parts = line.split(separator: ": ", maxSplits: 1)
            var values: [String: UInt64] = [:]
            for pair in parts[1].split(separator: " ") {
                let kv = pair.split(separator: "=")
                if kv.count == 2, let value = UInt64(kv[1]) { values[String(kv[0])] = value }
            }
            counters[String(parts[0])] = values
        }
        return counters
    }

    deinit {
        process.kill()
        _ = try? process.wait(timeout: .seconds(5))
    }
}
