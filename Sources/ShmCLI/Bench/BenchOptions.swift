import ArgumentParser
import Shm

/// Options every `shm bench` subcommand shares.
struct BenchOptions: ParsableArguments {
    @Option(help: "Two CPUs to pin the two processes to, e.g. 0,1.")
    var cpus: String = "0,1"

    @Flag(help: "One JSON object per row.")
    var json = false

    /// The parent's and the child's CPU, or nil if pinning is impossible.
    func cpuPair() throws -> (Int, Int)? {
        let parts = cpus.split(separator: ",").compactMap { Int($0) }
        guard parts.count == 2, parts[0] >= 0, parts[1] >= 0 else {
            throw ValidationError("--cpus takes two CPU numbers, e.g. 0,1")
        }
        if CPU.onlineCount < 2 { return nil }
        return (parts[0], parts[1])
    }

    /// Pins this process and reports the placement on stderr.
    func pinParent() throws -> Int? {
        guard let (parent, child) = try cpuPair() else {
            StandardStreams.printError("note: only one CPU online; processes are not pinned")
            return nil
        }
        do { try CPU.pinCurrentThread(to: parent) } catch {
            StandardStreams.printError("note: cannot pin to CPU \(parent) (\(error)); not pinned")
            return nil
        }
        return child
    }
}

/// Spawns the benchmark peer for `session` with `role`.
func spawnBenchPeer(_ session: BenchSession, role: String, childCPU: Int?, extra: [String] = []) throws -> ChildProcess {
    var arguments = ["bench-peer", "--role", role] + session.childArguments + extra
    if let childCPU { arguments += ["--cpu", String(childCPU)] }
    let child = try ChildProcess.spawn(ChildProcess.currentExecutablePath, arguments: arguments,
                                       inheriting: session.inherit, captureOutput: true)
    try session.afterSpawn()
    return child
}

/// Waits for a benchmark peer and turns a failure into an error with its stderr.
func finish(_ child: ChildProcess) throws {
    let status = try child.wait(timeout: .seconds(20))
    guard status == .exited(0) else {
        throw BenchFailure("benchmark peer \(status): \(child.errorText.trimmingCharacters(in: .whitespacesAndNewlines))")
    }
}

/// Progress on stderr, overwritten in place (suppressed with --json).
struct Progress {
    let enabled: Bool
    let total: Int
    var done = 0

    mutating func step(_ what: String) {
        done += 1
        if enabled { StandardStreams.write("\r\u{1b}[K[\(done)/\(total)] \(what)", to: 2) }
    }

    func clear() { if enabled { StandardStreams.write("\r\u{1b}[K", to: 2) } }
}

import Foundation
