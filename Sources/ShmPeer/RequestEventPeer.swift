#if canImport(Glibc)
import Glibc
#endif
import Shm

/// Request and response of the request/response tests.
struct TestRequest: BitwiseCopyable { var a: Int64; var b: Int64 }
struct TestResponse: BitwiseCopyable { var sum: Int64; var part: Int64 }
let testRRType = "swiftshm.tests.Add"

func testRRService(_ node: Node, _ name: String) throws -> RequestResponseService<TestRequest, TestResponse> {
    try node.requestResponse(name, request: TestRequest.self, response: TestResponse.self, typeName: testRRType,
                             config: .init(maxClients: 8, maxServers: 2, queueDepth: 16))
}

/// Answers `count` requests, each with `parts` responses (the last final).
func rrServe(_ name: String, count: Int, parts: Int) throws {
    let node = try Node(name: "peer-server")
    let server = try testRRService(node, name).server()
    print("serving")
    for _ in 0..<count {
        let active = try server.receive(timeout: .seconds(30))
        for part in 0..<parts {
            try active.respond(TestResponse(sum: active.request.a + active.request.b, part: Int64(part)), final: part == parts - 1)
        }
    }
    print("served \(count)")
}

/// Takes one request, announces it, and hangs without answering (to be killed).
func rrServeAndHang(_ name: String) throws {
    let node = try Node(name: "peer-server")
    let server = try testRRService(node, name).server()
    print("serving")
    let active = try server.receive(timeout: .seconds(30))
    print("got \(active.request.a)")
    while true { sleep(60) }
}

/// Sends `count` requests and checks every answer.
func rrClient(_ name: String, count: Int) throws {
    let node = try Node(name: "peer-client")
    let client = try testRRService(node, name).client()
    for i in 0..<Int64(count) {
        let answer = try client.send(TestRequest(a: i, b: 1000)).response(timeout: .seconds(30))
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
