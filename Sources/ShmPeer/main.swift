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

func strategy(_ text: String) -> WaitStrategy {
    switch text {
    case "spin": .busySpin
    case "block": .block
    default: .default
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

    case ("scribble", 4):
        // Overwrites 8 bytes at a data offset of a segment, as a buggy or hostile peer would.
        let segment = try SharedMemorySegment.open(args[1])
        guard let value = UInt64(args[3]) else { fail("bad value") }
        segment.data.storeBytes(of: value, toByteOffset: int(args[2]), as: UInt64.self)
        print("scribbled")

    case ("ring-produce", 4):
        try ringProduce(args[1], count: UInt64(int(args[2])), strategy: strategy(args[3]))

    case ("ring-consume", 4):
        try ringConsume(args[1], count: UInt64(int(args[2])), strategy: strategy(args[3]))

    case ("ring-claim-hang", 2):
        try ringClaimAndHang(args[1])

    case ("ring-park-hang", 2):
        try ringParkAndHang(args[1])

    case ("queue-produce", 4):
        try queueProduce(args[1], id: UInt32(int(args[2])), count: UInt64(int(args[3])))

    case ("queue-consume", 6):
        try queueConsume(args[1], results: args[2], consumer: int(args[3]), producers: int(args[4]),
                         perProducer: UInt64(int(args[5])))

    case ("queue-claim-hang", 2):
        try queueClaimAndHang(args[1])

    case ("mutex-lock-hang", 2):
        try mutexLockAndHang(args[1])

    case ("mutex-hammer", 3):
        try mutexHammer(args[1], rounds: int(args[2]))

    case ("semaphore-take", 3):
        try semaphoreTake(args[1], count: int(args[2]))

    case ("event-wait", 2):
        try eventWait(args[1])

    case ("ps-pub", 5):
        try servicePublish(args[1], id: UInt32(int(args[2])), count: UInt64(int(args[3])), subscribers: int(args[4]))

    case ("ps-sub", 4):
        try serviceSubscribe(args[1], count: int(args[2]), publishers: int(args[3]))

    case ("ps-pub-forever", 5), ("ps-pub-forever", 6):
        try servicePublishForever(args[1], id: UInt32(int(args[2])), intervalMicroseconds: UInt32(int(args[3])), history: int(args[4]),
                                  buffer: args.count > 5 ? int(args[5]) : 16)

    case ("ps-pub-burst", 3):
        try servicePublishBurstAndLeave(args[1], count: UInt64(int(args[2])))

    case ("ps-sub-stalled", 5):
        try serviceSubscribeStalled(args[1], buffer: int(args[2]), overflow: args[3], expect: int(args[4]))

    case ("ps-leak", 2):
        try serviceLeakAndHang(args[1])

    case ("lease", 1):
        // Takes this process's lease (at start-up, as every participant does), says its token, waits.
        print("lease \(ProcessLease.hex(ProcessLease.token))")
        while true { sleep(60) }

    case ("ps-one-process", 5):
        try servicePublishAndSubscribeInOneProcess(args[1], publishers: int(args[2]), subscribers: int(args[3]), rounds: int(args[4]))

    case ("sigbus-unguarded", 2):
        try sigbusOutsideGuardedMappings(args[1], appHandler: false)

    case ("sigbus-chained", 2):
        try sigbusOutsideGuardedMappings(args[1], appHandler: true)

    case ("ps-pub-history", 4):
        try servicePublishThenReplay(args[1], count: UInt64(int(args[2])), history: int(args[3]))

    case ("log-claim-hang", 2):
        try logClaimAndHang(args[1])

    case ("ps-victim", 3):
        try serviceVictim(args[1], rounds: int(args[2]))

    case ("rr-victim", 3):
        try requestResponseVictim(args[1], rounds: int(args[2]))

    case ("ps-pub-fast", 4):
        try servicePublishFast(args[1], count: UInt64(int(args[2])), policy: args[3])

    case ("race", 4):
        try raceOnName(args[1], args[2], rounds: int(args[3]))

    case ("rr-client-hang", 2):
        try rrClientAndHang(args[1])

    case ("grow-pub", 4):
        // grow-pub NAME COUNT HOLD(0|1)
        try growthPublish(args[1], count: int(args[2]), hold: args[3] == "1")
    case ("frames-pub", 4):
        try framesPublish(args[1], count: int(args[2]), bytes: int(args[3]))

    case ("frames-sub", 4):
        try framesSubscribe(args[1], count: int(args[2]), bytes: int(args[3]))

    case ("ps-mismatch", 2):
        try serviceOpenMismatched(args[1])

    case ("rr-serve", 4):
        try rrServe(args[1], count: int(args[2]), parts: int(args[3]))

    case ("rr-serve-hang", 2):
        try rrServeAndHang(args[1])

    case ("rr-client", 3):
        try rrClient(args[1], count: int(args[2]))

    case ("rr-serve-hold", 3):
        try rrServeAndHold(args[1], count: int(args[2]))

    case ("rr-client-hold", 3):
        try rrClientAndHold(args[1], count: int(args[2]))

    case ("steady-syscalls", 3):
        try steadyStateWithoutSyscalls(args[1], rounds: int(args[2]))

    case ("ev-notify", 4):
        try eventNotify(args[1], id: int(args[2]), count: int(args[3]))

    case ("ev-listen", 3):
        try eventListen(args[1], ids: Set(args[2].split(separator: ",").map { int(String($0)) }))

    case ("log-append", 5):
        try logAppend(args[1], tag: args[2], count: int(args[3]), durability: args[4])

    case ("log-tail", 3):
        try logTail(args[1], count: int(args[2]))

    default:
        fail("unknown command or wrong arguments: \(args.joined(separator: " "))")
    }
} catch {
    fail("\(error)")
}
