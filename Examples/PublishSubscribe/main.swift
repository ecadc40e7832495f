// Publish/subscribe between two processes, zero-copy.
//
//   swift run example-pubsub              # both sides: spawns the subscriber, then publishes
//   swift run example-pubsub subscribe    # in one terminal …
//   swift run example-pubsub publish      # … and this in another
//
// The publisher loans a sample in its pool (shared memory), writes the
// payload in place and sends it: subscribers receive a read-only view of the
// same memory. Dropping a received sample hands it back to the pool.

#if canImport(Glibc)
import Glibc
#endif
import Shm

/// The payload: any BitwiseCopyable type (no pointers, no references).
struct Position: BitwiseCopyable {
    var tick: UInt64
    var x: Double, y: Double, z: Double
}

let serviceName = "example.positions"
let count = 10

func publish() throws {
    let node = try Node(name: "example-publisher")
    // Opens the service, or creates it with this configuration. Another
    // process opening it with another payload type or incompatible limits
    // gets an error naming the difference.
    let service = try node.publishSubscribe(serviceName, of: Position.self,
                                            config: PublishSubscribeConfig(subscriberBufferSize: 16, historySize: 4))
    let publisher = try service.publisher()
    print("publisher: waiting for a subscriber")
    guard try publisher.waitForSubscribers(1, timeout: .seconds(30)) else {
        print("publisher: nobody subscribed within 30 s")
        return
    }
    for tick in 1...UInt64(count) {
        let sample = try publisher.loanUninitialized()           // memory in the shared pool
        let reached = try sample.write(Position(tick: tick, x: Double(tick), y: 0.5, z: -1)).send()
        print("publisher: sent tick \(tick) to \(reached) subscriber(s)")
        usleep(100_000)
    }
}

func subscribe() throws {
    let node = try Node(name: "example-subscriber")
    let service = try node.publishSubscribe(serviceName, of: Position.self,
                                            config: PublishSubscribeConfig(subscriberBufferSize: 16, historySize: 4))
    let subscriber = try service.subscriber()                      // spins briefly, then sleeps on a futex
    for _ in 0..<count {
        let sample = try subscriber.receive(timeout: .seconds(30))
        let p = sample.payload                                      // read in place, no copy made by the transport
        print("subscriber: tick \(p.tick) at (\(p.x), \(p.y), \(p.z)) from publisher \(sample.publisherID)")
    }                                                               // each sample is handed back when dropped
    print("subscriber: lost \(subscriber.lostSamples) sample(s)")
}

switch CommandLine.arguments.dropFirst().first {
case "publish": try publish()
case "subscribe": try subscribe()
case nil:
    let child = try ChildProcess.spawn(ChildProcess.currentExecutablePath, arguments: ["subscribe"])
    try publish()
    print("subscriber \(try child.wait(timeout: .seconds(30)))")
default:
    print("usage: example-pubsub [publish|subscribe]")
}
