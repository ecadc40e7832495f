// The README's Swift code, compiled with the package: ReadmeExamplesTests
// checks that every ```swift block of README.md (its `import` lines aside)
// is the region between `// readme: N` and `// end` here, in order. The
// blocks are fragments of two processes' code, so this program is built,
// never run: each block is the body of a function of its own, what a block
// takes from its surroundings (a frame's bytes, a socket, a payload type) is
// declared above it, and what it makes is used after its `// end`.

import Logging
import Metrics
import Prometheus
import Shm
import ShmLog
import ShmMetrics
import SystemPackage

// What the blocks use from their surroundings.
struct Frame: BitwiseCopyable { var id: UInt64; var pixels: (UInt64, UInt64, UInt64, UInt64) }
struct Query: BitwiseCopyable { var a: Int64; var b: Int64 }
struct Tick: BitwiseCopyable { var time: UInt64; var price: Double }
struct Reading: BitwiseCopyable { var t: UInt64; var x: Double }
struct Job: BitwiseCopyable { var id: Int }
func show(_ frame: Frame) {}
func handle(_ bytes: some Collection<UInt8>) {}
func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 { bytes.reduce(0) { $0 &+ UInt32($1) } }
func repair(after pid: Int32) {}

func readmeSegments(frameBytes: [UInt8]) throws {
// readme: 1

// A named POSIX segment: /dev/shm/swiftshm.<uid>.camera.frames
let segment = try SharedMemorySegment.create("camera.frames", size: 64 << 20) { data in
    data.storeBytes(of: UInt32(1), toByteOffset: 0)      // runs before anyone can open it
}
segment.data.write(frameBytes, at: 64)                    // bounds-checked
// The creator's handle removes the name when it is released — in a release
// build that is after its last use, not at the end of the scope: keep it
// (a stored property, withExtendedLifetime) while others should open it.
// …in another process:
let same = try SharedMemorySegment.open("camera.frames")  // header validated: magic, version, size, checksum
let count = same.data.load(fromByteOffset: 0, as: UInt32.self)

// A file read and written through memory (MAP_SHARED); any offset.
let file = try MappedFile(path: "data.bin", access: .readWrite, offset: 100, length: 4096)
file.bytes[0] &+= 1
try file.sync()                 // msync(MS_SYNC)
try file.advise(.sequential)    // madvise
try file.grow(to: 1 << 20)      // ftruncate/posix_fallocate + mremap

// An anonymous memfd segment, sealed, handed to another process.
let frames = try MemfdSegment.create(label: "frames", size: 1 << 20)
let (mine, theirs) = try UnixSocket.pair()
let child = try ChildProcess.spawn("/path/to/worker", arguments: ["3"], inheriting: [3: theirs.fileDescriptor])
try frames.send(over: mine)     // SCM_RIGHTS; the child calls MemfdSegment.receive(from:)

// System V, for programs that still use it.
let legacy = try SystemVSegment.create(key: try SystemVSegment.key(path: "/etc/myapp", projectID: 1), size: 4096)
// end
_ = (count, child, legacy)
}

func readmeServices(pixels: (UInt64, UInt64, UInt64, UInt64)) throws {
// readme: 2
let node = try Node(name: "camera")                                // registers pid + start time
let frames = try node.publishSubscribe("camera.frames", of: Frame.self,
                                       config: .init(subscriberBufferSize: 4, historySize: 1, overflow: .overwriteOldest))
let publisher = try frames.publisher()
let sample = try publisher.loanUninitialized()                     // memory in the publisher's shared pool
try sample.write(Frame(id: 1, pixels: pixels)).send()              // no copy: subscribers get a reference

// …another process:
let subscriber = try node.publishSubscribe("camera.frames", of: Frame.self).subscriber()
let frame = try subscriber.receive(timeout: .seconds(1))          // read-only view of the same memory
print(frame.payload.id, frame.sequence, subscriber.lostSamples)    // dropped → handed back to the pool

// Byte slices of any length up to a maximum:
let logs = try node.publishSubscribe("app.logs", slicesOf: UInt8.self, maxLength: 4096)
// A pool holds every sample the limits allow in flight, each of the largest
// size; above 1 MiB of that it grows with what is in flight instead
// (PoolAllocation: .automatic by default, or .reserved / .growing()).
let logWriter = try logs.publisher(allocation: .reserved)
print(logWriter.footprint.bytes)                                    // its bytes in /dev/shm

// Request/response: one answer or a stream, each read in place (no copies).
let calc = try node.requestResponse("calc", request: Query.self, response: Int64.self)
let client = try calc.client(), server = try calc.server()
let pending = try client.loanUninitialized().write(Query(a: 40, b: 2)).send()   // in the client's pool
let request = try server.receiveInPlace(timeout: nil)                           // where the client wrote it
try request.loanResponse().write(request.payload.a + request.payload.b).send()  // in the server's pool
let answer = try pending.receive(timeout: .seconds(1)).payload                  // 42
// Copying forms: client.send(Query(a: 40, b: 2)).response(), server.receive().respond(42).

// Events and a wait set over listeners, subscribers and servers (futex_waitv).
// An event is a change seen after the listener exists: ids notified before a
// listener was created are not reported to it (use history or a log for that).
try node.event("jobs").notifier().notify(EventID(3))
let waitSet = WaitSet(); let a = waitSet.attach(try node.event("jobs").listener()); _ = waitSet.attach(subscriber)
let ready = try waitSet.wait(timeout: .seconds(1))
// end
_ = (logs, answer, ready, a)
}

func readmeLog(tick: Tick, socket: FileDescriptor) throws {
// readme: 3

let log = try Log.openOrCreate(directory: "/var/lib/app/events",
                               config: LogConfig(segmentSize: 64 << 20))     // files 0000000000.seg, … rolled when full
let appender = try log.appender(durability: .none)                          // or .everyRecords(100), .interval(.milliseconds(10)), .everyAppend
let record = try appender.append("order 42 filled")                         // → sequence 1, position 0:12288, timestamp
let claim = try appender.claim(count: 40)                                  // or write in place…
claim.unsafeBytes.storeBytes(of: tick, as: Tick.self)
try claim.commit()                                                          // …published by one store; CRC32C in the header

// …in another process:
let tailer = try Log.open(directory: "/var/lib/app/events").tailer(from: .start)   // .end, .sequence(n), .time(ns), .position(p)
let next = try tailer.next(timeout: .seconds(1))                           // spins, then sleeps on a futex

try log.trim(maxBytes: 10 << 30, maxAge: .seconds(7 * 86_400))            // retention: whole segments
let sent = try log.send(from: 1000, maxRecords: 500, to: socket)          // sendfile(2): page cache → socket
let report = log.verify()                                                   // every CRC, every sequence
let pretoucher = try log.pretoucher(lead: 8 << 20, cpu: 1)                 // another core zeroes the pages ahead and makes the next segment
// end
_ = (record, next, sent, report)
pretoucher.stop()
}

func readmeStructures(bytes: [UInt8], reading: Reading, now: UInt64, readings: [Reading]) throws {
// readme: 4
// Process A: a 1 MiB ring of variable-length messages.
let ring = try MessageRing.create("telemetry", capacity: 1 << 20)
let producer = try ring.producer()                     // one producer per ring
try producer.send(bytes)                               // copy in
try producer.send(count: 64) { buffer in               // or write in place (zero-copy)
    buffer.storeBytes(of: reading, as: Reading.self); return MemoryLayout<Reading>.size
}
try producer.send(value: Reading(t: now, x: 1.5))      // BitwiseCopyable values in place
try producer.publishBatch { for r in readings { try producer.send(value: r) } }   // visible at once: 2x the stream rate

// Process B
let consumer = try MessageRing.open("telemetry").consumer()
let message = try consumer.receive(timeout: .seconds(1))           // a copy
let sum = try consumer.receive { bytes in checksum(bytes) }         // in place, freed after the closure

// Many producers and consumers, fixed-size slots.
let queue = try MessageQueue.create("jobs", capacity: 1024, slotSize: 256)
try queue.send(value: Job(id: 7))
let job = try queue.receive(Job.self, timeout: .seconds(1))

// A mutex that tells you when its previous holder died holding it.
let mutex = try SharedMutex.create("state.lock")
switch try mutex.lock(timeout: .seconds(1)) {
case .acquired: break
case .ownerDied(let pid): repair(after: pid)           // you hold the lock; state may be half-updated
}
defer { try? mutex.unlock() }
// end
_ = (message, sum, job)
}

func readmeAsync(subscriber: Subscriber<Frame>, tailer: LogTailer, consumer: MessageRing.Consumer, queue: MessageQueue) async throws {
// readme: 5
for try await value in subscriber.values { show(value) }           // samples
for try await record in tailer.records { handle(record.bytes) }    // log records
for try await message in consumer.messages { handle(message) }     // ring messages
let job = try await queue.receive(timeout: .seconds(1))            // queue slots
// end
_ = job
}

func readmeMetrics(registry: PrometheusCollectorRegistry) {
// readme: 6
LoggingSystem.bootstrap(StreamLogHandler.standardError)
MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
ShmLogging.logger = Logger(label: "swift-shm")          // operator events into your logs
Task { await MetricsSampler(logs: ["/var/lib/app/events"]).run(every: .seconds(10)) }
// end
}
