import ArgumentParser
import Shm
#if canImport(Glibc)
import Glibc
#endif

/// The demo's layout in the segment's data area.
///
/// ```text
/// offset 0    UInt32 turn     odd: a message for the child, even: a reply for the parent
/// offset 8    UInt32 length   bytes of the current message
/// offset 64   message bytes
/// ```
enum DemoLayout {
    static let turn = 0, length = 8, message = 64
    static let size = 64 * 1024

    static func turnWord(_ data: MappedBytes) -> SharedAtomic<UInt32> { SharedAtomic(data, offset: turn) }

    static func put(_ text: String, into data: MappedBytes) {
        let bytes = Array(text.utf8.prefix(data.count - message))
        data.storeBytes(of: UInt32(bytes.count), toByteOffset: length, as: UInt32.self)
        data.write(bytes, at: message)
    }

    /// Reads the message, range-checking the length another process wrote.
    static func take(from data: MappedBytes) -> String {
        let count = min(Int(data.load(fromByteOffset: length, as: UInt32.self)), data.count - message)
        return String(decoding: data.read(message..<message + count), as: UTF8.self)
    }

    /// Waits until the turn word equals `value`: spins briefly, then sleeps
    /// in growing steps; gives up after `timeout`.
    static func wait(for value: UInt32, in word: SharedAtomic<UInt32>, timeout: Duration = .seconds(10)) throws {
        let deadline = monotonicNanoseconds() + timeout.nanoseconds
        var spins = 0
        // SYNC POINT: acquire pairs with the partner's release store of `turn`
        // (after it wrote the message and its length).
        while word.atomic.pointee.load(ordering: .acquiring) != value {
            spins += 1
            if spins > 10_000 {
                if monotonicNanoseconds() > deadline { throw CommandFailure("the other process did not answer within \(timeout)") }
                usleep(50)
            }
        }
    }
}

struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Two processes exchange data through one shared segment.")

    @Option(help: "Messages to exchange.") var messages = 3
    @Option(name: .customLong("round-trips"), help: "Timed ping-pong round trips afterwards.") var roundTrips = 100_000

    func run() throws {
        let me = getpid()
        let name = "demo.\(me)"
        let segment = try reporting { try SharedMemorySegment.create(name, size: DemoLayout.size) }
        let data = segment.data
        let turn = DemoLayout.turnWord(data)
        say("parent \(me)", "created segment '\(name)' (\(ByteCount.format(segment.info.dataSize)) at \(SharedMemorySegment.directory)/\(segment.name.fileName))")
        let child = try reporting {
            try ChildProcess.spawn(ChildProcess.currentExecutablePath,
                                   arguments: ["demo-peer", name, String(messages), String(roundTrips)])
        }
        say("parent \(me)", "spawned child process \(child.pid); it maps the same segment by name")

        for i in 1...max(1, messages) {
            let text = "message \(i) from pid \(me): " + String(repeating: "#", count: i * 8)
            DemoLayout.put(text, into: data)
            let odd = UInt32(2 * i - 1)
            // SYNC POINT: release pairs with the child's acquire load in `DemoLayout.wait`.
            turn.atomic.pointee.store(odd, ordering: .releasing)
            say("parent \(me)", "wrote \(text.utf8.count) bytes: \"\(text)\"")
            try DemoLayout.wait(for: odd + 1, in: turn)
            say("parent \(me)", "read reply: \"\(DemoLayout.take(from: data))\"")
        }

        // Timed ping-pong: both processes spin on the turn word.
        var value = UInt32(2 * max(1, messages))
        let start = monotonicNanoseconds()
        for _ in 0..<roundTrips {
            value &+= 1
            // SYNC POINT: release pairs with the child's acquire in its ping-pong loop.
            turn.atomic.pointee.store(value, ordering: .releasing)
            value &+= 1
            try DemoLayout.wait(for: value, in: turn)
        }
        let elapsed = monotonicNanoseconds() - start
        let status = try reporting { try child.wait(timeout: .seconds(10)) }
        guard status == .exited(0) else { throw CommandFailure("child \(child.pid) \(status)") }
        if roundTrips > 0 {
            let oneWay = Double(elapsed) / Double(roundTrips) / 2
            say("parent \(me)", "\(roundTrips) round trips through the shared turn word: \(String(format1: oneWay)) ns one-way on average (spinning; see `shm bench` for the measured comparison)")
        }
        say("parent \(me)", "child \(status); removing '\(name)'")
    }
}

/// The child half of `shm demo` (not for direct use).
struct DemoPeerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "demo-peer", shouldDisplay: false)

    @Argument var name: String
    @Argument var messages: Int
    @Argument var roundTrips: Int

    func run() throws {
        let me = getpid()
        let segment = try reporting { try SharedMemorySegment.open(name) }
        let data = segment.data
        let turn = DemoLayout.turnWord(data)
        let creator = segment.info.creator
        say("child  \(me)", "opened '\(name)': header valid, created by pid \(creator.pid) (\(creator.isAlive ? "alive" : "dead"))")
        for i in 1...max(1, messages) {
            let odd = UInt32(2 * i - 1)
            try DemoLayout.wait(for: odd, in: turn)
            let text = DemoLayout.take(from: data)
            say("child  \(me)", "read \(text.utf8.count) bytes: \"\(text)\"")
            DemoLayout.put("pid \(me) got \(text.utf8.count) bytes", into: data)
            // SYNC POINT: release pairs with the parent's acquire load in `DemoLayout.wait`.
            turn.atomic.pointee.store(odd + 1, ordering: .releasing)
        }
        var value = UInt32(2 * max(1, messages))
        for _ in 0..<roundTrips {
            value &+= 1
            try DemoLayout.wait(for: value, in: turn)
            value &+= 1
            // SYNC POINT: release pairs with the parent's acquire in its ping-pong loop.
            turn.atomic.pointee.store(value, ordering: .releasing)
        }
    }
}

func say(_ who: String, _ text: String) {
    StandardStreams.printLine("[\(who)] \(text)")
}

extension String {
    /// `value` with one decimal.
    init(format1 value: Double) {
        let tenths = Int((value * 10).rounded())
        self = "\(tenths / 10).\(abs(tenths % 10))"
    }
}
