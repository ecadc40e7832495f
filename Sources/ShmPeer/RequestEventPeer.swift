#if canImport(Glibc)
import Glibc
#endif
import Shm
import ShmTestSupport

/// Answers `count` requests, each with `parts` responses (the last final).
func rrServe(_ name: String, count: Int, parts: Int) throws {
    let node = try Node(name: "peer-server")
    let server = try addService(node, name).server()
    print("serving")
    for _ in 0..<count {
        let active = try server.receive(timeout: .seconds(30))
        for part in 0..<parts {
            try active.respond(AddResponse(sum: active.request.left + active.request.right, part: Int64(part)), final: part == parts - 1)
        }
    }
    print("served \(count)")
}

/// Takes one request, announces it, and hangs without answering (to be killed).
func rrServeAndHang(_ name: String) throws {
    let node = try Node(name: "peer-server")
    let server = try addService(node, name).server()
    print("serving")
    let active = try server.receive(timeout: .seconds(30))
    print("got \(active.request.left)")
    while true { sleep(60) }
}

/// Sends `count` requests and checks every answer.
func rrClient(_ name: String, count: Int) throws {
    let node = try Node(name: "peer-client")
    let client = try addService(node, name).client()
    for i in 0..<Int64(count) {
        let answer = try client.send(AddRequest(left: i, right: 1000)).response(timeout: .seconds(30))
        guard answer.sum == i + 1000 else { throw PayloadError("request \(i): sum \(answer.sum)") }
    }
    print("answered \(count)")
}

/// Notifies event `id` `count` times, 1 ms apart.
func eventNotify(_ name: String, id: Int, count: Int) throws {
    let node = try Node(name: "peer-notifier")
    let notifier = try node.event(name, config: .init(maxEventID: 15)).notifier()
    for _ in 0..<count {
        try notifier.notify(EventID(id))
        usleep(1000)
    }
    print("notified \(count)")
}

/// Waits until each of the given ids fired once; prints them in order of arrival.
func eventListen(_ name: String, ids: Set<Int>) throws {
    let node = try Node(name: "peer-listener")
    let listener = try node.event(name, config: .init(maxEventID: 15)).listener()
    print("listening")
    var seen = Set<Int>()
    let deadline = monotonicNanoseconds() + 30_000_000_000
    while seen != ids {
        guard monotonicNanoseconds() < deadline else { throw PayloadError("saw \(seen.sorted()) of \(ids.sorted())") }
        for id in listener.wait(timeout: .seconds(1)) { seen.insert(id.value) }
    }
    print("heard \(seen.sorted().map(String.init).joined(separator: ","))")
}

/// Takes `count` requests in place (in the client's pool) and holds them
/// all, announces it, and hangs (to be killed holding them).
func rrServeAndHold(_ name: String, count: Int) throws {
    let node = try Node(name: "peer-server")
    let server = try addService(node, name).server()
    print("serving")
    // Each request stays alive in its own frame (an array cannot hold non-copyable values).
    func hold(_ remaining: Int) throws {
        let request = try server.receiveInPlace(timeout: .seconds(30))
        if remaining > 1 { try hold(remaining - 1) } // never returns
        print("holding \(count)")
        withExtendedLifetime(request) { while true { sleep(60) } }
    }
    try hold(count)
}

/// Sends `count` requests, takes each response in place (in the server's
/// pool) and holds them all, announces it, and hangs (to be killed).
func rrClientAndHold(_ name: String, count: Int) throws {
    let node = try Node(name: "peer-client")
    let client = try addService(node, name).client()
    func hold(_ i: Int) throws {
        let response = try client.send(AddRequest(left: Int64(i), right: 1)).receive(timeout: .seconds(30))
        guard response.payload.sum == Int64(i) + 1 else { throw PayloadError("request \(i): sum \(response.payload.sum)") }
        if i + 1 < count { try hold(i + 1) }
        print("holding \(count)")
        withExtendedLifetime(response) { while true { sleep(60) } }
    }
    try hold(0)
}

/// Steady state without syscalls: warms up, then runs `rounds` pub/sub
/// samples and request/response exchanges (loans both ways, then the
/// copying calls) in this one thread between two `getppid()` markers, for a
/// test that traces the process (strace) and expects no syscall of this
/// thread between them.
func steadyStateWithoutSyscalls(_ name: String, rounds: Int) throws {
    let node = try Node(name: "peer-steady")
    let pubsub = try node.publishSubscribe(name + ".ps", slicesOf: UInt8.self, maxLength: 256,
                                           config: .init(maxPublishers: 1, maxSubscribers: 1, subscriberBufferSize: 4))
    let publisher = try pubsub.publisher(), subscriber = try pubsub.subscriber()
    // A pool that grows (from one chunk of 64 bytes) during the warm-up only.
    let growing = try node.publishSubscribe(name + ".grow", slicesOf: UInt8.self, maxLength: 256,
                                            config: .init(maxPublishers: 1, maxSubscribers: 1, subscriberBufferSize: 4))
    let grower = try growing.publisher(allocation: .growing(initialChunks: 1)), growingSubscriber = try growing.subscriber()
    let rr = try addService(node, name + ".rr")
    let client = try rr.client(), server = try rr.server()
    func round(_ i: Int) throws {
        _ = try publisher.send(copyOf: [UInt8(truncatingIfNeeded: i)])
        guard let sample = try subscriber.tryReceive(), sample.unsafeBytes.count == 1 else { throw PayloadError("sample \(i)") }
        _ = try grower.send(copyOf: repeatElement(UInt8(truncatingIfNeeded: i), count: 1 + i % 256))
        guard let grown = try growingSubscriber.tryReceive(), grown.unsafeBytes.count == 1 + i % 256 else {
            throw PayloadError("grown sample \(i)")
        }
        let pending = try client.loanUninitialized().write(AddRequest(left: Int64(i), right: 1)).send()
        guard let request = try server.tryReceiveInPlace() else { throw PayloadError("request \(i)") }
        try request.loanResponse().write(AddResponse(sum: request.payload.left + request.payload.right, part: 0)).send()
        guard try pending.receive(timeout: .seconds(1)).payload.sum == Int64(i) + 1 else { throw PayloadError("response \(i)") }
        let copied = try client.send(AddRequest(left: Int64(i), right: 2))
        guard let active = try server.tryReceive() else { throw PayloadError("copied request \(i)") }
        try active.respond(AddResponse(sum: active.request.left + active.request.right, part: 0))
        guard try copied.response(timeout: .seconds(1)).sum == Int64(i) + 2 else { throw PayloadError("copied response \(i)") }
    }
    for i in 0..<2_000 { try round(i) }
    _ = getppid() // marker: steady state from here
    for i in 0..<rounds { try round(i) }
    _ = getppid() // marker: to here
    print("steady \(rounds)")
}
