#if canImport(Glibc)
import Glibc
#endif
import Shm
import ShmLog

/// The record payload multi-process log tests write: "TAG:INDEX:" and
/// INDEX % 37 bytes of padding, so lengths vary and every record says who
/// wrote it and in which order.
func logPayload(tag: String, index: Int) -> String {
    "\(tag):\(index):" + String(repeating: "x", count: index % 37)
}

/// Parses a payload from `logPayload`; nil if it is not one.
func parseLogPayload(_ text: String) -> (tag: String, index: Int)? {
    let parts = text.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
    guard parts.count == 3, let index = Int(parts[1]), parts[2] == Substring(String(repeating: "x", count: index % 37)) else { return nil }
    return (String(parts[0]), index)
}

/// Appends `count` records (0: until killed) tagged `tag`; prints
/// "ack INDEX SEQUENCE" after each append returns.
func logAppend(_ directory: String, tag: String, count: Int, durability: String) throws {
    // "<durability>+exclusive": the log's only appender (no CAS per claim).
    let exclusive = durability.hasSuffix("+exclusive")
    let policyText = exclusive ? String(durability.dropLast("+exclusive".count)) : durability
    guard let policy = Durability(parsing: policyText) else { fail("bad durability \(durability)") }
    let log = try Log.openOrCreate(directory: directory, config: LogConfig(segmentSize: 64 << 10, indexGranularity: 512))
    let appender = exclusive ? try log.exclusiveAppender(durability: policy) : try log.appender(durability: policy)
    print("ready")
    var index = 0
    while count == 0 || index < count {
        let record = try appender.append(logPayload(tag: tag, index: index))
        print("ack \(index) \(record.sequence)")
        index += 1
    }
    print("done")
}

/// Tails `count` records from the start, checking each payload and the
/// per-tag order; prints "tailed COUNT TAG=LAST …".
func logTail(_ directory: String, count: Int) throws {
    var log: Log?
    let end = monotonicNanoseconds() + 20_000_000_000
    while log == nil {
        log = try? Log.open(directory: directory)
        if log == nil {
            if monotonicNanoseconds() > end { fail("no log appeared") }
            usleep(1000)
        }
    }
    let tailer = try log!.tailer(from: .start)
    print("ready")
    var last: [String: Int] = [:]
    var previousSequence: UInt64 = 0
    for _ in 0..<count {
        let record = try tailer.next(timeout: .seconds(20))
        guard let (tag, index) = parseLogPayload(record.text) else { fail("bad payload at \(record.sequence): \(record.text)") }
        if let previous = last[tag], index != previous + 1 { fail("\(tag) went from \(previous) to \(index)") }
        if last[tag] == nil, index != 0 { fail("\(tag) started at \(index)") }
        guard record.sequence > previousSequence else { fail("sequence \(record.sequence) after \(previousSequence)") }
        previousSequence = record.sequence
        last[tag] = index
    }
    print("tailed \(count) " + last.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))
}

/// Claims space for a record and never commits it (to be SIGKILLed while
/// holding the claim); prints "claimed SEQUENCE".
func logClaimAndHang(_ directory: String) throws {
    let log = try Log.openOrCreate(directory: directory, config: LogConfig(segmentSize: 64 << 10, indexGranularity: 512))
    let appender = try log.appender()
    let claim = try appender.claim(count: 100)
    print("claimed \(claim.sequence)")
    while true { sleep(60) }
}
