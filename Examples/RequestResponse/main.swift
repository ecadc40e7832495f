// Request/response between two processes: one response, or a stream.
//
//   swift run example-request-response          # spawns the server, then acts as the client
//   swift run example-request-response serve   # a server that runs until interrupted
//
// Requests and responses are loaned in their sender's pool in shared memory
// and read in place; a server answers any number of clients, each response
// reaches the client that asked. The copying calls (`send(_:)`, `receive()`,
// `respond(_:)`, `response()`) sit on top of the loans used for `add` here.

import Shm

struct Request: BitwiseCopyable {
    enum Operation: UInt8 { case add, countUp, stop }
    var operation: Operation
    var a: Int64
    var b: Int64
}

let serviceName = "example.calculator"

func serve(forever: Bool) throws {
    let node = try Node(name: "example-server")
    let service = try node.requestResponse(serviceName, request: Request.self, response: Int64.self)
    let server = try service.server()
    print("server: ready")
    while true {
        let request = try server.receiveInPlace(timeout: forever ? nil : .seconds(30))
        if request.payload.operation == .add {
            // Zero-copy: read the request where the client wrote it, write the
            // response where the client will read it.
            try request.loanResponse().write(request.payload.a + request.payload.b).send()
            continue
        }
        let active = ActiveRequest(request) // a copy, for the cases below
        switch active.request.operation {
        case .add:
            break
        case .countUp:
            // A stream: several responses, the last one marked final.
            for value in active.request.a...active.request.b {
                try active.respond(value, final: value == active.request.b)
            }
        case .stop:
            try active.respond(0)
            print("server: stopping")
            return
        }
    }
}

func ask() throws {
    let node = try Node(name: "example-client")
    let service = try node.requestResponse(serviceName, request: Request.self, response: Int64.self)
    let client = try service.client()
    // The server may still be starting: the request waits in the client
    // until a server connects (at most `queueDepth` of them do).
    let pending = try client.loanUninitialized().write(Request(operation: .add, a: 40, b: 2)).send()
    let sum = try pending.receive(timeout: .seconds(30)).payload
    print("client: 40 + 2 = \(sum)")
    let stream = try client.send(Request(operation: .countUp, a: 1, b: 5))
    var values: [Int64] = []
    while true {
        let (value, isFinal) = try stream.next(timeout: .seconds(5))
        values.append(value)
        if isFinal { break }
    }
    print("client: streamed \(values)")
    _ = try client.send(Request(operation: .stop, a: 0, b: 0)).response(timeout: .seconds(5))
}

switch CommandLine.arguments.dropFirst().first {
case "serve": try serve(forever: true)
case "server-once": try serve(forever: false)
case nil:
    let child = try ChildProcess.spawn(ChildProcess.currentExecutablePath, arguments: ["server-once"])
    try ask()
    print("server \(try child.wait(timeout: .seconds(30)))")
default:
    print("usage: example-request-response [serve]")
}
