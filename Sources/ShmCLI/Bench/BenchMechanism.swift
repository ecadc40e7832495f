import Foundation
import Shm
import CShmTools
#if canImport(Glibc)
import Glibc
#endif

/// The IPC mechanisms `shm bench` compares.
enum BenchMechanism: String, CaseIterable, Sendable {
    case floor
    case ringSpin = "ring-spin"
    case ringDefault = "ring-default"
    case ringBlock = "ring-block"
    case ringCopy = "ring-copy"
    case futex
    case pipe
    case unix
    case mq
    case tcp
    /// Publish/subscribe services both ways (`shm bench pubsub`).
    case pubsub
    /// A request/response service (`shm bench rr`).
    case requestResponse = "rr"
    /// The ring's bytes with no per-record protocol (`shm bench throughput` only).
    case streamFloor = "stream-floor"

    /// What `shm bench latency` measures unless told otherwise.
    static let latencyDefaults = allCases.filter { !$0.isService && $0 != .streamFloor }

    var isService: Bool { self == .pubsub || self == .requestResponse }

    /// Row label in tables.
    var label: String {
        switch self {
        case .floor: "floor: cache-line ping-pong"
        case .ringSpin: "ring zero-copy, busy-spin"
        case .ringDefault: "ring zero-copy, spin-then-park"
        case .ringBlock: "ring zero-copy, blocking"
        case .ringCopy: "ring copy, busy-spin"
        case .futex: "raw futex ping-pong"
        case .pipe: "pipe"
        case .unix: "Unix domain socket"
        case .mq: "POSIX message queue"
        case .tcp: "TCP loopback"
        case .pubsub: "publish/subscribe"
        case .requestResponse: "request/response"
        case .streamFloor: "stream floor: the ring's bytes, no protocol"
        }
    }

    /// Signalling baselines carry no payload: measured at 8 B only.
    var payloadless: Bool { self == .floor || self == .futex }

    var isRing: Bool { [.ringSpin, .ringDefault, .ringBlock, .ringCopy].contains(self) }

    var ringStrategy: WaitStrategy {
        switch self {
        case .ringDefault: .default
        case .ringBlock: .block
        default: .busySpin
        }
    }
}

/// The parent's side of one benchmark channel, plus what the child needs to
/// build its side.
final class BenchSession {
    let endpoint: any BenchEndpoint
    let childArguments: [String]
    let inherit: [Int32: Int32]
    /// Runs after the child is spawned (TCP accepts here).
    var afterSpawn: () throws -> Void = {}
    private let cleanup: () -> Void
    /// Keeps segments alive for the session.
    private let keep: [AnyObject]

    init(endpoint: any BenchEndpoint, childArguments: [String], inherit: [Int32: Int32] = [:],
         keep: [AnyObject] = [], cleanup: @escaping () -> Void = {}) {
        self.endpoint = endpoint
        self.childArguments = childArguments
        self.inherit = inherit
        self.keep = keep
        self.cleanup = cleanup
    }

    deinit { cleanup() }
}

/// A stream endpoint that is filled in after the TCP accept.
final class DeferredEndpoint: BenchEndpoint {
    var inner: StreamEndpoint?
    let size: Int
    init(size: Int) { self.size = size }
    func send(_ seq: UInt64) throws { try inner!.send(seq) }
    func receive() throws -> UInt64 { try inner!.receive() }
}

enum BenchSetup {
    nonisolated(unsafe) static var counter = 0

    /// A segment name unique to this run.
    static func segmentName(_ mechanism: BenchMechanism, _ size: Int) -> String {
        counter += 1
        return "bench.\(getpid()).\(counter).\(mechanism.rawValue).\(size)"
    }

    /// Byte offset of the second ring in a two-ring segment.
    static func secondRingOffset(capacity: Int) -> Int {
        (MessageRing.requiredSize(capacity: capacity) + 4095) & ~4095
    }

    /// Sets up the parent's side; `ringCapacity` overrides the ring size (throughput).
    static func parent(_ mechanism: BenchMechanism, size: Int, ringCapacity: Int? = nil,
                       service: ServiceBenchParameters = .init()) throws -> BenchSession {
        var args = ["--mechanism", mechanism.rawValue, "--size", String(size)]
        switch mechanism {
        case .pubsub:
            return try PubSubEndpoint.parentSession(name: segmentName(mechanism, size), size: size, parameters: service)
        case .requestResponse:
            return try requestResponseParentSession(name: segmentName(mechanism, size), size: size, parameters: service)
        case .streamFloor:
            let name = segmentName(mechanism, size)
            let segment = try SharedMemorySegment.create(name, size: StreamFloorEndpoint.segmentSize, populate: true)
            args += ["--name", name]
            return BenchSession(endpoint: StreamFloorEndpoint(bytes: segment.data, size: size), childArguments: args, keep: [segment])
        case .floor, .futex:
            let name = segmentName(mechanism, size)
            let segment = try SharedMemorySegment.create(name, size: 4096)
            args += ["--name", name]
            let endpoint: any BenchEndpoint = mechanism == .floor
                ? FloorEndpoint(data: segment.data, parent: true) : FutexEndpoint(data: segment.data, parent: true)
            return BenchSession(endpoint: endpoint, childArguments: args, keep: [segment])
        case .ringSpin, .ringDefault, .ringBlock, .ringCopy:
            let name = segmentName(mechanism, size)
            let capacity = ringCapacity ?? RingEndpoint.capacity(for: size)
            let second = secondRingOffset(capacity: capacity)
            let segment = try SharedMemorySegment.create(name, size: second * 2, populate: true) { data in
                _ = try MessageRing.initialize(data.view(0..<second), capacity: capacity)
                _ = try MessageRing.initialize(data.view(second..<2 * second), capacity: capacity)
            }
            let out = try MessageRing(attaching: segment.data.view(0..<second), anchor: segment)
            let inbound = try MessageRing(attaching: segment.data.view(second..<2 * second), anchor: segment)
            let endpoint = try RingEndpoint(out: out, in: inbound, size: size, zeroCopy: mechanism != .ringCopy,
                                            strategy: mechanism.ringStrategy)
            args += ["--name", name, "--capacity", String(capacity)]
            return BenchSession(endpoint: endpoint, childArguments: args, keep: [segment])
        case .pipe:
            var toChild: [Int32] = [0, 0], toParent: [Int32] = [0, 0]
            guard cshmtools_pipe_cloexec(&toChild) == 0, cshmtools_pipe_cloexec(&toParent) == 0 else {
                throw BenchFailure("pipe: \(Errno.current)")
            }
            for fd in [toChild[1], toParent[0]] { _ = fcntl(fd, 1031 /* F_SETPIPE_SZ */, 1 << 20) }
            let endpoint = StreamEndpoint(readFD: toParent[0], writeFD: toChild[1], size: size)
            return BenchSession(endpoint: endpoint, childArguments: args + ["--read-fd", "3", "--write-fd", "4"],
                                inherit: [3: toChild[0], 4: toParent[1]],
                                cleanup: { close(toChild[0]); close(toParent[1]) })
        case .unix:
            var fds: [Int32] = [0, 0]
            guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
                throw BenchFailure("socketpair: \(Errno.current)")
            }
            let endpoint = StreamEndpoint(readFD: fds[0], writeFD: fds[0], size: size)
            return BenchSession(endpoint: endpoint, childArguments: args + ["--read-fd", "3", "--write-fd", "3"],
                                inherit: [3: fds[1]], cleanup: { close(fds[1]) })
        case .mq:
            let base = "/swiftshm-bench-\(getpid())-\(size)"
            _ = cshmtools_raise_mqueue_limit(64 << 20)
            let maxMessages = max(2, min(10, (16 << 20) / max(size, 1)))
            let toChild = cshmtools_mq_create(base + "-a", maxMessages, max(size, 8))
            let toParent = cshmtools_mq_create(base + "-b", maxMessages, max(size, 8))
            guard toChild >= 0, toParent >= 0 else {
                let e = Errno.current
                if toChild >= 0 { _ = cshmtools_mq_close(toChild) }
                _ = cshmtools_mq_unlink(base + "-a"); _ = cshmtools_mq_unlink(base + "-b")
                let limit = (try? String(contentsOfFile: "/proc/sys/fs/mqueue/msgsize_max", encoding: .utf8))?
                    .trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
                throw BenchFailure("mq_open with \(size)-byte messages: \(e) (fs.mqueue.msgsize_max is \(limit))")
            }
            let endpoint = MessageQueueEndpoint(out: toChild, in: toParent, size: size)
            return BenchSession(endpoint: endpoint, childArguments: args + ["--name", base],
                                cleanup: { _ = cshmtools_mq_unlink(base + "-a"); _ = cshmtools_mq_unlink(base + "-b") })
        case .tcp:
            let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let bound = withUnsafeMutablePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(listener, $0, length) == 0 && listen(listener, 1) == 0 && getsockname(listener, $0, &length) == 0
                }
            }
            guard bound else { close(listener); throw BenchFailure("tcp listen: \(Errno.current)") }
            let port = UInt16(bigEndian: address.sin_port)
            let endpoint = DeferredEndpoint(size: size)
            let session = BenchSession(endpoint: endpoint, childArguments: args + ["--port", String(port)],
                                       cleanup: { close(listener) })
            session.afterSpawn = {
                var pfd = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
                guard poll(&pfd, 1, 10_000) == 1 else { throw BenchFailure("tcp: child did not connect") }
                let fd = accept(listener, nil, nil)
                guard fd >= 0 else { throw BenchFailure("accept: \(Errno.current)") }
                setNoDelay(fd)
                endpoint.inner = StreamEndpoint(readFD: fd, writeFD: fd, size: size)
            }
            return session
        }
    }

    /// Builds the child's side from its arguments.
    static func child(_ mechanism: BenchMechanism, size: Int, name: String?, capacity: Int?, readFD: Int32?,
                      writeFD: Int32?, port: UInt16?, service: ServiceBenchParameters = .init()) throws -> any BenchEndpoint {
        switch mechanism {
        case .pubsub:
            return try PubSubEndpoint(child: name ?? "", size: size, parameters: service)
        case .requestResponse:
            return try requestResponseChild(name: name ?? "", size: size, parameters: service)
        case .streamFloor:
            return StreamFloorEndpoint(bytes: try SharedMemorySegment.open(name ?? "").data, size: size)
        case .floor, .futex:
            let segment = try SharedMemorySegment.open(name ?? "")
            return mechanism == .floor ? FloorEndpoint(data: segment.data, parent: false)
                : FutexEndpoint(data: segment.data, parent: false)
        case .ringSpin, .ringDefault, .ringBlock, .ringCopy:
            let segment = try SharedMemorySegment.open(name ?? "")
            let second = secondRingOffset(capacity: capacity ?? 0)
            let fromParent = try MessageRing(attaching: segment.data.view(0..<second), anchor: segment)
            let toParent = try MessageRing(attaching: segment.data.view(second..<2 * second), anchor: segment)
            return try RingEndpoint(out: toParent, in: fromParent, size: size, zeroCopy: mechanism != .ringCopy,
                                    strategy: mechanism.ringStrategy)
        case .pipe, .unix:
            return StreamEndpoint(readFD: readFD ?? 3, writeFD: writeFD ?? 4, size: size)
        case .mq:
            let base = name ?? ""
            let fromParent = cshmtools_mq_open(base + "-a"), toParent = cshmtools_mq_open(base + "-b")
            guard fromParent >= 0, toParent >= 0 else { throw BenchFailure("mq_open: \(Errno.current)") }
            return MessageQueueEndpoint(out: toParent, in: fromParent, size: size)
        case .tcp:
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
            address.sin_port = (port ?? 0).bigEndian
            let connected = withUnsafePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
                }
            }
            guard connected else { throw BenchFailure("tcp connect: \(Errno.current)") }
            setNoDelay(fd)
            return StreamEndpoint(readFD: fd, writeFD: fd, size: size)
        }
    }
}

func setNoDelay(_ fd: Int32) {
    var one: Int32 = 1
    _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
}
