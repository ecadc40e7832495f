// Request/response between two processes: one response, or a stream.
//
//   swift run example-request-response          # spawns the server, then acts as the client
//   swift run example-request-response serve   # a server that runs until interrupted
//
// Requests and responses travel through queues in shared memory; a server
// answers any number of clients, each response reaches the client that asked.

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
        let active = try server.receive(timeout: forever ? nil : .seconds(30))
        switch active.request.operation {
        case .add:
            try active.respond(active.request.a + active.request.b)
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
    // The server may still be starting: retry the first request until it answers.
    var sum: Int64?
    for _ in 0..<300 where sum == nil {
        sum = try? client.send(Request(operation: .add, a: 40, b: 2)).response(timeout: .milliseconds(100))
    }
    print("client: 40 + 2 = \(sum.map(String.init) ?? "no answer")")
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
