// ShmPeer — "the other process" for swift-shm's multi-process tests.
//
// Each command does one thing to a segment, a memfd or a file and reports
// on stdout; errors go to stderr with exit status 3. Tests spawn it with
// posix_spawn, read its output, and sometimes SIGKILL it mid-operation.
#if canImport(Glibc)
import Glibc
#endif
import Shm

func print(_ line: String) { StandardStreams.printLine(line) }

func fail(_ message: String) -> Never {
    StandardStreams.printError("ShmPeer: \(message)")
    exit(3)
}

func int(_ text: String) -> Int {
    guard let value = Int(text) else { fail("not a number: \(text)") }
    return value
}

/// Text stored at `offset`: bytes up to the first NUL (at most `limit`).
func text(in bytes: MappedBytes, at offset: Int, limit: Int = 256) -> String {
    let raw = bytes.read(offset..<min(bytes.count, offset + limit))
    return String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
}

func write(_ string: String, to bytes: MappedBytes, at offset: Int) {
    bytes.write(Array(string.utf8) + [0], at: offset)
}

/// Polls (bounded) until `bytes` at `offset` hold `expected`.
func waitFor(_ expected: String, in bytes: MappedBytes, at offset: Int, timeout: Duration = .seconds(10)) {
    let deadline = monotonicNanoseconds() + timeout.nanoseconds
    while text(in: bytes, at: offset) != expected {
        if monotonicNanoseconds() > deadline { fail("timed out waiting for '\(expected)'") }
        usleep(200)
    }
}

let args = Array(CommandLine.arguments.dropFirst())
guard let command = args.first else { fail("usage: ShmPeer COMMAND ARGS…") }

do {
    switch (command, args.count) {
    case ("posix-write", 4):
        let segment = try SharedMemorySegment.open(args[1])
        write(args[3], to: segment.data, at: int(args[2]))
        print("wrote \(args[3])")

    case ("posix-read", 3):
        let segment = try SharedMemorySegment.open(args[1], access: .readOnly)
        print(text(in: segment.data, at: int(args[2])))

    case ("posix-echo", 2):
        // Waits for "ping" at 0, answers "pong from PID" at 256.
        let segment = try SharedMemorySegment.open(args[1])
        waitFor("ping", in: segment.data, at: 0)
        write("pong from \(getpid())", to: segment.data, at: 256)
        print("answered")

    case ("posix-hold", 3):
        _ = try SharedMemorySegment.create(args[1], size: int(args[2]), lifetime: .persistent)
        print("ready")
        while true { sleep(60) }

    case ("posix-open", 2):
        let segment = try SharedMemorySegment.open(args[1], timeout: .milliseconds(200))
        print("ok \(segment.info.dataSize)")

    case ("memfd-receive", 4):
        // Receives a memfd over the inherited socket descriptor args[1].
        let socket = UnixSocket(adopting: Int32(int(args[1])))
        let segment = try MemfdSegment.receive(from: socket)
        print("received \(segment.label) \(segment.info.dataSize) sealed=\(segment.seals.contains(.shrink))")
        print(text(in: segment.data, at: 0))
        write(args[3], to: segment.data, at: int(args[2]))

    case ("memfd-inherited", 4):
        let segment = try MemfdSegment(adopting: Int32(int(args[1])))
        print(text(in: segment.data, at: 0))
        write(args[3], to: segment.data, at: int(args[2]))

    case ("sysv-write", 4):
        guard let key = Int32(args[1]) else { fail("bad key") }
        let segment = try SystemVSegment.open(key: key)
        write(args[3], to: segment.data, at: int(args[2]))
        print("wrote \(args[3])")

    case ("file-write", 4):
        let file = try MappedFile(path: args[1], access: .readWrite)
        write(args[3], to: file.bytes, at: int(args[2]))
        try file.sync()
        print("wrote \(args[3])")

    case ("file-read", 3):
        let file = try MappedFile(path: args[1])
        print(text(in: file.bytes, at: int(args[2])))

    default:
        fail("unknown command or wrong arguments: \(args.joined(separator: " "))")
    }
} catch {
    fail("\(error)")
}
