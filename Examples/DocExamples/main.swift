// The code of the DocC getting-started articles (Sources/Shm/Shm.docc,
// Sources/ShmLog/ShmLog.docc), compiled and run by the tests:
// DocExamplesTests checks that every region between `// snippet: NAME` and
// `// end` appears verbatim in its article, and runs this program.

import Shm
import ShmLog

// snippet: position
struct Position: BitwiseCopyable { var tick: UInt64; var x, y, z: Double }
// end

func publishAndSubscribe() throws {
    do {
// snippet: subscribe
let node = try Node(name: "planner")
let subscriber = try node.publishSubscribe("robot.position", of: Position.self,
                                           config: PublishSubscribeConfig(subscriberBufferSize: 16, historySize: 1)).subscriber()
// end
// snippet: publish
let tracker = try Node(name: "tracker")
let service = try tracker.publishSubscribe("robot.position", of: Position.self,
                                           config: PublishSubscribeConfig(subscriberBufferSize: 16, historySize: 1))
let publisher = try service.publisher()
try publisher.loanUninitialized().write(Position(tick: 1, x: 0.5, y: 0, z: -1)).send()
// end
// snippet: receive
let sample = try subscriber.receive(timeout: .seconds(1))   // a read-only view of the publisher's memory
print("received tick \(sample.payload.tick) at x \(sample.payload.x)")
// end
        _ = consume sample
        withExtendedLifetime((node, tracker, publisher)) {}
    }
}

func appendAndTail(_ directory: String) throws {
// snippet: append
let log = try Log.openOrCreate(directory: directory, config: LogConfig(segmentSize: 1 << 20))
let appender = try log.appender(durability: .none)     // or .everyAppend: msync before append returns
_ = try appender.append("hello")
let claim = try appender.claim(count: 8)               // or write in place
claim.unsafeBytes.storeBytes(of: UInt64(42), as: UInt64.self)
_ = try claim.commit()
// end
// snippet: tail
let tailer = try Log.open(directory: directory).tailer(from: .start)
while let record = try? tailer.next(timeout: .milliseconds(100)) {
    print("record \(record.sequence): \(record.bytes.count) bytes")
}
// end
    withExtendedLifetime(appender) {}
}

// The catalogs' overview pages: compiled, not run (they name fixed
// services and directories).
func overview() throws {
// snippet: overview
let node = try Node(name: "camera")
let frames = try node.publishSubscribe("camera.frames", slicesOf: UInt8.self, maxLength: 1280 * 720 * 3)
let publisher = try frames.publisher()
let sample = try publisher.loanUninitialized(count: 1280 * 720 * 3)   // memory in the shared pool
// … draw the frame into sample.unsafeBuffer …
try sample.assumeInitialized().send()                                 // subscribers get a reference
// end
    withExtendedLifetime((node, publisher)) {}
}

func logOverview() async throws {
// snippet: log-overview
let log = try Log.openOrCreate(directory: "/var/lib/app/events")
let appender = try log.appender(durability: .none)
let record = try appender.append("order 42 filled")

let tailer = try Log.open(directory: "/var/lib/app/events").tailer(from: .start)
for try await record in tailer.records { print(record.sequence, record.bytes.count) }
// end
    withExtendedLifetime((appender, record)) {}
}

let directory = "/tmp/swiftshm-doc-examples-\(ProcessIdentity.current.pid)"
do {
    try publishAndSubscribe()
    try appendAndTail(directory)
    removeDirectoryOfFiles(directory)
} catch {
    removeDirectoryOfFiles(directory)
    fatalError("doc-examples: \(error)")
}
