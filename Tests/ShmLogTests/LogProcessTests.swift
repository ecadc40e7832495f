#if canImport(Glibc)
import Glibc
#endif
import Testing
import ShmSystem
import ShmTestSupport
@testable import ShmLog

/// The payload the peer writes (see Sources/ShmPeer/LogPeer.swift).
func parsePeerPayload(_ text: String) -> (tag: String, index: Int)? {
    let parts = text.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
    guard parts.count == 3, let index = Int(parts[1]), parts[2] == Substring(String(repeating: "x", count: index % 37)) else { return nil }
    return (String(parts[0]), index)
}

/// The highest index a peer said it had appended ("ack INDEX SEQUENCE").
func lastAck(_ output: String) -> Int? {
    output.split(separator: "\n").reversed().lazy.compactMap { line -> Int? in
        let parts = line.split(separator: " ")
        return parts.count == 3 && parts[0] == "ack" ? Int(parts[1]) : nil
    }.first
}

@Suite("Log across processes")
struct LogProcessTests {
    @Test func appendersInSeveralProcessesAndATailerInAnother() throws {
        let scratch = ScratchLog("mp")
        _ = try scratch.create()
        let count = 3000
        let tailer = try TestSupport.spawnPeer(["log-tail", scratch.directory, String(3 * count)])
        #expect(try tailer.readLine(timeout: .seconds(20)) == "ready")
        let appenders = try ["a", "b", "c"].map { tag in
            try TestSupport.spawnPeer(["log-append", scratch.directory, tag, String(count), "none"])
        }
        for appender in appenders { #expect(try appender.wait(timeout: .seconds(60)) == .exited(0), "\(appender.errorText)") }
        #expect(try tailer.wait(timeout: .seconds(60)) == .exited(0), "\(tailer.errorText)")
        #expect(tailer.outputText.contains("tailed \(3 * count) a=\(count - 1) b=\(count - 1) c=\(count - 1)"), "\(tailer.outputText)")
        let log = try Log.open(directory: scratch.directory)
        let verification = log.verify()
        #expect(verification.isIntact && verification.records == 3 * count, "\(verification.problems)")
        // Sequence numbers are contiguous: every claim was committed.
        #expect(try readAll(log).map(\.sequence) == Array(1...UInt64(3 * count)))
    }

    /// A tailer in another process is waiting at a claim whose appender is
    /// then SIGKILLed, while two other appenders keep appending after it:
    /// the tailer steps over the dead claim and reads every other record.
    @Test func aLiveTailerStepsOverAKilledAppendersClaim() throws {
        let scratch = ScratchLog("claimkill")
        _ = try scratch.create()
        let count = 2000
        let tailer = try TestSupport.spawnPeer(["log-tail", scratch.directory, String(2 * count)])
        #expect(try tailer.readLine(timeout: .seconds(20)) == "ready")
        let stuck = try TestSupport.spawnPeer(["log-claim-hang", scratch.directory])
        #expect(try stuck.readLine(timeout: .seconds(20)) == "claimed 1")
        let appenders = try ["a", "b"].map { tag in
            try TestSupport.spawnPeer(["log-append", scratch.directory, tag, String(count), "none"])
        }
        // The tailer cannot pass the live claim: it is still waiting.
        #expect((try? tailer.wait(timeout: .milliseconds(300))) == nil)
        stuck.kill(SIGKILL)
        _ = try stuck.wait(timeout: .seconds(10))
        for appender in appenders { #expect(try appender.wait(timeout: .seconds(60)) == .exited(0), "\(appender.errorText)") }
        #expect(try tailer.wait(timeout: .seconds(60)) == .exited(0), "\(tailer.errorText)")
        #expect(tailer.outputText.contains("tailed \(2 * count) a=\(count - 1) b=\(count - 1)"), "\(tailer.outputText)")
        let verification = try Log.open(directory: scratch.directory).verify()
        #expect(verification.isIntact, "\(verification.problems)")
    }

    /// `.everyAppend` syncs before `append` returns — seen from the kernel's
    /// side (strace), since SIGKILL keeps the page cache and so cannot tell:
    /// between two acknowledgements the peer prints, an msync/fsync happens.
    @Test func everyAppendSyncsBeforeAppendReturns() throws {
        guard access("/usr/bin/strace", X_OK) == 0 else {
            print("skipped everyAppendSyncsBeforeAppendReturns: no /usr/bin/strace (apt-get install strace)")
            return
        }
        let scratch = ScratchLog("strace")
        _ = try scratch.create()
        let trace = scratch.directory + ".trace"
        defer { unlink(trace) }
        for (durability, mustSync) in [("always", true), ("none", false)] {
            let peer = try ChildProcess.spawn("/usr/bin/strace", arguments: [
                "-f", "-qq", "-e", "trace=msync,fsync,fdatasync,write", "-o", trace,
                TestSupport.peerPath, "log-append", scratch.directory, durability, "20", durability,
            ], captureOutput: true)
            #expect(try peer.wait(timeout: .seconds(60)) == .exited(0), "\(peer.errorText)")
            let lines = try #require(readSmallFile(trace, limit: 1 << 22)).split(separator: "\n")
            var syncedSinceAck = true, acks = 0, unsynced = 0
            for line in lines {
                if line.contains("msync(") || line.contains("fsync(") || line.contains("fdatasync(") { syncedSinceAck = true }
                if line.contains("write(1, \"ack ") {
                    acks += 1
                    if !syncedSinceAck { unsynced += 1 }
                    syncedSinceAck = false
                }
            }
            #expect(acks == 20, "\(durability): \(acks) acks in the trace")
            if mustSync { #expect(unsynced == 0, "\(unsynced) of 20 appends returned before a sync") }
            else { #expect(unsynced >= 19, "durability none synced \(20 - unsynced) times?") }
        }
    }

    /// Appenders SIGKILLed at random points, again and again: each time the
    /// log recovers, verifies, keeps every acknowledged record, and goes on.
    @Test(arguments: ["none", "always"])
    func appendersKilledAtRandomPointsLoseNothingAcknowledged(durability: String) throws {
        let scratch = ScratchLog("kill")
        let log = try scratch.create()
        var acknowledged: [String: Int] = [:]
        for round in 0..<5 {
            try killAppenderPeersAndRecover(log, directory: scratch.directory, tags: ["r\(round)a", "r\(round)b"], durability: durability,
                                            round: round, pause: 2_000...30_000, acknowledged: &acknowledged)
        }
        #expect(log.verify().isIntact)
    }

    /// A tailer killed while registered as one that may sleep leaves the
    /// count high; recovery resets it once no such tailer is alive.
    @Test func countsLeftByAKilledTailerAreResetByRecovery() throws {
        let scratch = ScratchLog("tailkill")
        let log = try scratch.create()
        let tailer = try TestSupport.spawnPeer(["log-tail", scratch.directory, "10"])
        #expect(try tailer.readLine(timeout: .seconds(20)) == "ready")
        usleep(50_000) // let it go to sleep on the parker
        tailer.kill()
        _ = try tailer.wait(timeout: .seconds(10))
        #expect(log.meta.parkingTailers.pointee.load(ordering: .relaxed) == 1)
        let live = try log.tailer() // a live tailer in this process keeps the counts
        do {
            let appender = try log.appender()
            #expect(appender.recovery != nil)
            #expect(log.meta.parkingTailers.pointee.load(ordering: .relaxed) == 2)
        }
        _ = consume live
        // The appender above has closed its lock, but a peer that another
        // test is spawning right now may still share that descriptor until
        // its exec (O_CLOEXEC closes it only then): try again, bounded.
        var recovery = try log.appender().recovery // (each try's appender is released before the next)
        let deadline = monotonicNanoseconds() + 5_000_000_000
        while recovery == nil && monotonicNanoseconds() < deadline {
            usleep(10_000)
            recovery = try log.appender().recovery
        }
        #expect(recovery != nil)
        #expect(log.meta.parkingTailers.pointee.load(ordering: .relaxed) == 0)
        #expect(log.meta.parker.sleeperCount == 0)
    }
}

/// The exclusive appender (no CAS per claim): alone, killed at random points
/// again and again; each time a shared appender recovers the log, which
/// verifies and keeps every acknowledged record; a tailer in another process
/// reads what it writes; and it refuses company by name.
@Suite("Exclusive appender")
struct ExclusiveAppenderTests {
    @Test func anExclusiveAppenderKilledAtRandomPointsLosesNothingAcknowledged() throws {
        let scratch = ScratchLog("xkill")
        let log = try scratch.create()
        var acknowledged = -1
        for round in 0..<5 {
            let tag = "x\(round)"
            let peer = try TestSupport.spawnPeer(["log-append", scratch.directory, tag, "0", "none+exclusive"])
            #expect(try peer.readLine(timeout: .seconds(20)) == "ready")
            usleep(UInt32.random(in: 2_000...30_000))
            peer.kill()
            _ = try peer.wait(timeout: .seconds(10))
            acknowledged = lastAck(peer.outputText) ?? -1
            let appender = try log.appender() // shared: recovery runs here
            #expect(appender.recovery != nil)
            let verification = log.verify()
            #expect(verification.isIntact, "round \(round): \(verification.problems)")
            var last = -1
            for record in try readAll(log) {
                guard let (recordTag, index) = parsePeerPayload(record.text), recordTag == tag else { continue }
                #expect(index == last + 1, "\(tag): \(index) after \(last)")
                last = index
            }
            #expect(last >= acknowledged, "\(tag): acknowledged \(acknowledged), log has \(last)")
            try appender.append("check \(round)")
        }
        #expect(log.verify().isIntact)
    }

    @Test func anExclusiveAppenderIsTailedByAnotherProcessAndRefusesCompany() throws {
        let scratch = ScratchLog("xtail")
        let log = try scratch.create()
        let tailer = try TestSupport.spawnPeer(["log-tail", scratch.directory, "3000"])
        #expect(try tailer.readLine(timeout: .seconds(20)) == "ready")
        do {
            let exclusive = try log.exclusiveAppender()
            #expect { _ = try log.appender() } throws: { error in
                guard case LogError.appendersBusy(_, false) = error else { return false }
                return true
            }
            for i in 0..<3000 { try exclusive.append("solo:\(i):" + String(repeating: "x", count: i % 37)) }
        }
        #expect(try tailer.wait(timeout: .seconds(30)) == .exited(0), "\(tailer.errorText)")
        #expect(tailer.outputText.contains("tailed 3000 solo=2999"), "\(tailer.outputText)")
        let shared = try log.appender()
        #expect { _ = try log.exclusiveAppender() } throws: { error in
            guard case LogError.appendersBusy(_, true) = error else { return false }
            return true
        }
        try shared.append("after")
        #expect(log.verify().isIntact)
    }
}
