import Shm
import CShmTools
#if canImport(Glibc)
import Glibc
#endif

/// One side of a ping-pong or stream channel in a benchmark. A message
/// carries a 64-bit sequence number in its first 8 bytes; the rest of the
/// payload is whatever the mechanism moves (copied, or claimed in place).
protocol BenchEndpoint: AnyObject {
    /// Payload bytes per message.
    var size: Int { get }
    func send(_ seq: UInt64) throws
    func receive() throws -> UInt64
}

/// Every receive gives up after this long: a dead peer is an error, not a hang.
let benchReceiveTimeout: Duration = .seconds(10)

struct BenchFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

// MARK: - The floor: two processes spinning on shared words

/// The physical floor: the other side sees our store to a shared cache line.
/// Each side spins on the other's word (its own 128-byte line).
final class FloorEndpoint: BenchEndpoint {
    let size = 8
    let mine: SharedAtomic<UInt64>
    let theirs: SharedAtomic<UInt64>
    var last: UInt64 = 0

    init(data: MappedBytes, parent: Bool) {
        mine = SharedAtomic(data, offset: parent ? 0 : 128)
        theirs = SharedAtomic(data, offset: parent ? 128 : 0)
    }

    func send(_ seq: UInt64) {
        // SYNC POINT: release pairs with the acquire load in the peer's `receive`.
        mine.unsafeAtomic.pointee.store(seq &+ 1, ordering: .releasing)
    }

    func receive() throws -> UInt64 {
        var spins: UInt32 = 0
        while true {
            // SYNC POINT: acquire pairs with the release store in the peer's `send`.
            let value = theirs.unsafeAtomic.pointee.load(ordering: .acquiring)
            if value != last { last = value; return value &- 1 }
            CPU.relax()
            spins &+= 1
            if spins == 0 { throw BenchFailure("peer silent") }
        }
    }
}

// MARK: - Raw futex ping-pong

/// The blocking floor: each side sleeps in FUTEX_WAIT until the other
/// stores and FUTEX_WAKEs. No spinning.
final class FutexEndpoint: BenchEndpoint {
    let size = 8
    let mine: SharedAtomic<UInt32>
    let theirs: SharedAtomic<UInt32>
    var last: UInt32 = 0

    init(data: MappedBytes, parent: Bool) {
        mine = SharedAtomic(data, offset: parent ? 256 : 384)
        theirs = SharedAtomic(data, offset: parent ? 384 : 256)
    }

    func send(_ seq: UInt64) {
        // SYNC POINT: release pairs with the acquire load in the peer's `receive`.
        let word: UInt32 = seq == .max ? .max : UInt32(truncatingIfNeeded: seq % 0xffff_fff0 &+ 1)
        mine.unsafeAtomic.pointee.store(word, ordering: .releasing)
        Futex.wake(mine.unsafeAddress, count: 1)
    }

    func receive() throws -> UInt64 {
        let deadline = monotonicNanoseconds() + benchReceiveTimeout.nanoseconds
        while true {
            // SYNC POINT: acquire pairs with the release store in the peer's `send`.
            let value = theirs.unsafeAtomic.pointee.load(ordering: .acquiring)
            if value != last {
                last = value
                return value == .max ? .max : UInt64(value &- 1)
            }
            if Futex.wait(theirs.unsafeAddress, expected: last, deadline: deadline) == .timedOut {
                throw BenchFailure("peer silent")
            }
        }
    }
}

// MARK: - Our SPSC ring

/// A pair of SPSC rings (out and in). Zero-copy: claim `size` bytes, write
/// only the 8-byte sequence number, commit; read in place. Copy: the whole
/// payload is copied in from a private buffer and out into another.
final class RingEndpoint: BenchEndpoint {
    let size: Int
    let zeroCopy: Bool
    let producer: MessageRing.Producer
    let consumer: MessageRing.Consumer
    let scratch: UnsafeMutableRawBufferPointer

    init(out: MessageRing, in inbound: MessageRing, size: Int, zeroCopy: Bool, strategy: WaitStrategy) throws {
        self.size = size
        self.zeroCopy = zeroCopy
        producer = try out.producer(waitStrategy: strategy)
        consumer = try inbound.consumer(waitStrategy: strategy)
        scratch = .allocate(byteCount: max(size, 8), alignment: 64)
        scratch.initializeMemory(as: UInt8.self, repeating: 0x5a)
    }

    deinit { scratch.deallocate() }

    func send(_ seq: UInt64) throws {
        if zeroCopy {
            let size = self.size
            do {
                try producer.send(count: size, timeout: benchReceiveTimeout) { (buffer) throws(Never) -> Int in
                    buffer.storeBytes(of: seq, as: UInt64.self)
                    return size
                }
            } catch {
                if case .queue(let e) = error { throw e }
            }
        } else {
            scratch.storeBytes(of: seq, as: UInt64.self)
            try producer.send(UnsafeRawBufferPointer(scratch), timeout: benchReceiveTimeout)
        }
    }

    func receive() throws -> UInt64 {
        if zeroCopy {
            do {
                return try consumer.receive(timeout: benchReceiveTimeout) { (bytes) throws(Never) -> UInt64 in
                    bytes.load(as: UInt64.self)
                }
            } catch {
                if case .queue(let e) = error { throw e }
                return 0
            }
        }
        _ = try consumer.receive(into: scratch, timeout: benchReceiveTimeout)
        return scratch.load(as: UInt64.self)
    }

    /// Streaming consumer: drains batches in place (copying each payload out
    /// in copy mode), checking that sequence numbers arrive 0, 1, 2, …
    /// Returns nanoseconds from the first message to the last.
    func drainCount(_ count: Int) throws -> UInt64 {
        var expected: UInt64 = 0
        var start: UInt64 = 0
        var failure: UInt64?
        let deadline = monotonicNanoseconds() + benchReceiveTimeout.nanoseconds * 6
        let scratch = self.scratch, zeroCopy = self.zeroCopy
        // Polling at the producer's heels pulls the cache line it is writing
        // away from it; after a small batch, back off (doubling, up to 512
        // pauses, ~20 µs here) so it can write the next batch undisturbed.
        // Tuned on this machine: thresholds of 1–64 and limits of 64–8192
        // were tried; 16 / 512 gave the best median.
        var backoff = 1
        let backoffThreshold = 16, backoffLimit = 512
        while expected < UInt64(count) {
            let n = try consumer.drain { bytes in
                let seq: UInt64
                if zeroCopy {
                    seq = bytes.load(as: UInt64.self)
                } else {
                    scratch.baseAddress!.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
                    seq = scratch.load(as: UInt64.self)
                }
                if seq != expected, failure == nil { failure = seq }
                expected &+= 1
            }
            if let failure { throw BenchFailure("expected message \(expected), got \(failure)") }
            if n > 0 && start == 0 { start = monotonicNanoseconds() }
            if n < backoffThreshold {
                // A small batch means we are at the producer's heels, reading
                // the line it is writing: give it room.
                if n == 0 && monotonicNanoseconds() > deadline { throw BenchFailure("producer stalled at \(expected)") }
                for _ in 0..<backoff { CPU.relax() }
                backoff = min(backoff * 2, backoffLimit)
            } else {
                backoff = 1
            }
        }
        let end = monotonicNanoseconds()
        try send(.max) // acknowledgement: the producer may exit
        return end - start
    }

    /// Capacity for messages of `size` bytes (any message fits at any position).
    static func capacity(for size: Int) -> Int {
        var capacity = 4096
        while MessageRing.maximumMessageSize(capacity: capacity) < size { capacity <<= 1 }
        return capacity
    }
}

// MARK: - File descriptors: pipe, Unix socket, TCP

/// Writes and reads whole messages of `size` bytes over stream descriptors.
final class StreamEndpoint: BenchEndpoint {
    let size: Int
    let readFD: Int32
    let writeFD: Int32
    let buffer: UnsafeMutableRawBufferPointer

    init(readFD: Int32, writeFD: Int32, size: Int) {
        self.readFD = readFD
        self.writeFD = writeFD
        self.size = size
        buffer = .allocate(byteCount: max(size, 8), alignment: 64)
        buffer.initializeMemory(as: UInt8.self, repeating: 0x5a)
    }

    deinit {
        buffer.deallocate()
        close(readFD)
        if writeFD != readFD { close(writeFD) }
    }

    func send(_ seq: UInt64) throws {
        buffer.storeBytes(of: seq, as: UInt64.self)
        var done = 0
        while done < size {
            let n = write(writeFD, buffer.baseAddress! + done, size - done)
            if n < 0 { if errno == EINTR { continue }; throw BenchFailure("write: \(Errno.current)") }
            done += n
        }
    }

    func receive() throws -> UInt64 {
        var done = 0
        while done < size {
            var pfd = pollfd(fd: readFD, events: Int16(POLLIN), revents: 0)
            let n = read(readFD, buffer.baseAddress! + done, size - done)
            if n > 0 { done += n; continue }
            if n == 0 { throw BenchFailure("peer closed") }
            if errno == EINTR { continue }
            if errno == EAGAIN, poll(&pfd, 1, Int32(benchReceiveTimeout.nanoseconds / 1_000_000)) > 0 { continue }
            throw BenchFailure("read: \(Errno.current)")
        }
        return buffer.load(as: UInt64.self)
    }
}

// MARK: - POSIX message queue

/// One POSIX message queue each way (`mq_send`/`mq_receive`).
final class MessageQueueEndpoint: BenchEndpoint {
    let size: Int
    let out: Int32
    let inbound: Int32
    let buffer: UnsafeMutableRawBufferPointer

    init(out: Int32, in inbound: Int32, size: Int) {
        self.size = size
        self.out = out
        self.inbound = inbound
        buffer = .allocate(byteCount: max(size, 8), alignment: 64)
        buffer.initializeMemory(as: UInt8.self, repeating: 0x5a)
    }

    deinit {
        buffer.deallocate()
        cshmtools_mq_close(out)
        cshmtools_mq_close(inbound)
    }

    func send(_ seq: UInt64) throws {
        buffer.storeBytes(of: seq, as: UInt64.self)
        while cshmtools_mq_send(out, buffer.baseAddress!, size) != 0 {
            if errno != EINTR { throw BenchFailure("mq_send: \(Errno.current)") }
        }
    }

    func receive() throws -> UInt64 {
        let deadline = wallClockNanoseconds() + benchReceiveTimeout.nanoseconds
        var ts = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
        while true {
            let n = cshmtools_mq_timedreceive(inbound, buffer.baseAddress!, max(size, 8), &ts)
            if n >= 0 { return buffer.load(as: UInt64.self) }
            if errno != EINTR { throw BenchFailure("mq_receive: \(Errno.current)") }
        }
    }
}
