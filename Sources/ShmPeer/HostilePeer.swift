#if canImport(Glibc)
import Glibc
#endif
import Shm
import ShmLog
import ShmTestSupport

/// The victim of hostile bytes: uses a service (sends, receives, makes new
/// ports, inspects it) for `rounds` rounds while another process scribbles
/// over its segments. Every error is caught and counted; a crash or a hang
/// is the failure. Prints "survived ROUNDS rounds, N errors".
func serviceVictim(_ name: String, rounds: Int) throws {
    let node = try Node(name: "peer-victim")
    let service = try testService(node, name, buffer: 8, overflow: .block)
    var publisher = try service.publisher()
    var subscriber = try service.subscriber()
    publisher.sendTimeout = .milliseconds(5)
    print("ready")
    var errors = 0
    for round in 0..<rounds {
        do { _ = try publisher.send(copyOf: TestSample(producer: 1, sequence: UInt64(round))) } catch { errors += 1 }
        for _ in 0..<4 {
            do {
                guard let sample = try subscriber.tryReceive() else { break }
                _ = sample.payload.isValid
            } catch { errors += 1 }
        }
        if round % 16 == 15 {
            do {
                let newPublisher = try service.publisher()
                newPublisher.sendTimeout = .milliseconds(5)
                publisher = newPublisher
            } catch { errors += 1 }
            do { subscriber = try service.subscriber() } catch { errors += 1 }
            if (try? ServiceDirectory.inspect(name)) == nil { errors += 1 }
        }
        usleep(200)
    }
    print("survived \(rounds) rounds, \(errors) errors")
}

/// The request/response victim: a client and a server in one process,
/// exchanging zero-copy requests and responses (short timeouts, errors
/// counted, ports replaced every 16 rounds) while another process scribbles
/// over their pools and inboxes.
func requestResponseVictim(_ name: String, rounds: Int) throws {
    let node = try Node(name: "peer-victim")
    let service = try addService(node, name)
    var client = try service.client(), server = try service.server()
    print("ready")
    var errors = 0
    for round in 0..<rounds {
        var pending: PendingResponse<AddRequest, AddResponse>?
        do {
            pending = try client.loanUninitialized().write(AddRequest(left: Int64(round), right: 1)).send(timeout: .milliseconds(5))
        } catch { errors += 1 }
        do {
            while let request = try server.tryReceiveInPlace() {
                let sum = request.payload.left &+ request.payload.right
                _ = try request.loanResponse().write(AddResponse(sum: sum, part: 0)).send(timeout: .milliseconds(5))
            }
        } catch { errors += 1 }
        if let pending {
            do { _ = try pending.receive(timeout: .milliseconds(1)).payload } catch { errors += 1 }
        }
        if round % 16 == 15 {
            do { client = try service.client() } catch { errors += 1 }
            do { server = try service.server() } catch { errors += 1 }
            if (try? ServiceDirectory.inspect(name)) == nil { errors += 1 }
        }
        usleep(200)
    }
    print("survived \(rounds) rounds, \(errors) errors")
}

/// One process of a create/open/unlink race on one name: `kind` is
/// "segment", "service" or "log". Only the expected errors of a race are
/// tolerated (gone, exists, not ready); anything else fails the peer.
func raceOnName(_ kind: String, _ name: String, rounds: Int) throws {
    var tolerated = 0
    for round in 0..<rounds {
        switch kind {
        case "segment":
            do throws(SegmentError) {
                let segment = try SharedMemorySegment.openOrCreate(try SegmentName(name), size: 8192, lifetime: .persistent)
                segment.data.storeBytes(of: UInt64(round), toByteOffset: 0, as: UInt64.self)
                if round % 3 == 0 { segment.unlinkIfStillLinked() }
            } catch {
                switch error {
                case .notFound, .alreadyExists, .notReady, .abandoned: tolerated += 1
                default: throw error
                }
            }
        case "service":
            let node = try Node(name: "peer-race")
            do {
                let service = try testService(node, name)
                let publisher = try service.publisher()
                let subscriber = try service.subscriber()
                _ = try publisher.send(copyOf: TestSample(producer: 3, sequence: UInt64(round)))
                _ = try subscriber.tryReceive()
            } catch let error as ServiceError {
                // A service being removed by its last user while we open it.
                switch error {
                case .notFound, .alreadyExists, .segment: tolerated += 1
                default: throw error
                }
            }
        case "log":
            let log = try Log.openOrCreate(directory: name, config: LogConfig(segmentSize: 64 << 10, indexGranularity: 512))
            let appender = try log.appender()
            _ = try appender.append("round \(round) of \(getpid())")
        default:
            fail("unknown race kind \(kind)")
        }
    }
    print("raced \(rounds) rounds, \(tolerated) tolerated")
}

/// Sends one request and hangs waiting (to be killed with it pending).
func rrClientAndHang(_ name: String) throws {
    let node = try Node(name: "peer-client")
    let client = try addService(node, name).client()
    _ = try client.send(AddRequest(left: 41, right: 1))
    print("sent")
    while true { sleep(60) }
}

/// Publishes `count` samples as fast as it can under `policy` once one
/// subscriber is there; prints "sent COUNT".
func servicePublishFast(_ name: String, count: UInt64, policy: String) throws {
    let overflow: OverflowPolicy = switch policy {
    case "overwrite": .overwriteOldest
    case "discard": .discard
    default: .block
    }
    let node = try Node(name: "peer-fast")
    let service = try testService(node, name, buffer: 8, overflow: overflow)
    let publisher = try service.publisher()
    publisher.sendTimeout = .seconds(30)
    guard try publisher.waitForSubscribers(1, timeout: .seconds(20)) else { throw PayloadError("no subscriber") }
    for sequence in 0..<count {
        try publisher.loanUninitialized().write(TestSample(producer: 2, sequence: sequence)).send()
    }
    print("sent \(count)")
}
