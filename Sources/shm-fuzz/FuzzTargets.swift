#if canImport(Glibc)
import Glibc
#endif
import Shm
import ShmLog
@_spi(ShmInternals) import ShmPrimitives
import ShmReplay
import ShmSystem

/// Every decoder of bytes that another process or an old file can hand us,
/// fed arbitrary input. A target returns normally for any input; a crash,
/// a trap, a hang or (under ASan) a bad access is the bug libFuzzer looks
/// for. Each target copies the input into a region laid out as the real
/// structure would be (a mapping, or a file), so the code runs as it does
/// on shared memory.
enum FuzzTargets {
    typealias Target = @Sendable (UnsafeRawBufferPointer) -> Void

    static let all: [(name: String, run: Target)] = [
        ("segment-header", segmentHeader),
        ("layout-header", layoutHeader),
        ("service-layout", serviceLayout),
        ("publisher-pool", publisherPool),
        ("subscriber-inbox", subscriberInbox),
        ("index-queue", indexQueue),
        ("spsc-ring", spscRing),
        ("mpmc-queue", mpmcQueue),
        ("log-wire", logWire),
        ("log-files", logFiles),
        ("recorded-sample", recordedSample),
    ]

    static func named(_ name: String) -> Target? { all.first { $0.name == name }?.run }

    /// One reusable region of shared memory (no file: nothing to clean up).
    static let region: MemoryMapping = {
        guard let (mapping, _) = try? AnonymousSharedMemory.map(size: 1 << 20) else { fatalError("no memory for the fuzz region") }
        return mapping
    }()

    /// The input laid over a zeroed region of `size` bytes (at most 1 MiB).
    static func place(_ input: UnsafeRawBufferPointer, size: Int = 1 << 16) -> MappedBytes {
        let bytes = region.bytes.view(0..<size)
        bytes.unsafeBaseAddress.initializeMemory(as: UInt8.self, repeating: 0, count: size)
        if let base = input.baseAddress { bytes.unsafeBaseAddress.copyMemory(from: base, byteCount: min(input.count, size)) }
        return bytes
    }

    /// A size chosen by the input's first bytes, so the fuzzer explores sizes too.
    static func size(from input: UnsafeRawBufferPointer, minimum: Int = 256) -> Int {
        guard input.count >= 2 else { return 1 << 16 }
        let chosen = (Int(input[0]) << 8 | Int(input[1])) * 16
        return min(1 << 20, max(minimum, chosen))
    }

    static func segmentHeader(_ input: UnsafeRawBufferPointer) {
        let bytes = place(input, size: 8192)
        _ = try? SegmentHeader.validate(bytes.unsafeBaseAddress, objectSize: Int.random(in: 0...16384), name: "fuzz")
        _ = try? SegmentHeader.validate(bytes.unsafeBaseAddress, objectSize: 8192, name: "fuzz")
    }

    static func layoutHeader(_ input: UnsafeRawBufferPointer) {
        let bytes = place(input, size: 4096)
        for magic in [SegmentKind("SVCE"), SegmentKind("PUBD"), SegmentKind("SUBQ"), SegmentKind("MPMC")] {
            _ = try? LayoutHeader.read(bytes, magic: magic, version: 1, count: 6, what: "fuzz")
        }
    }

    /// The body of the input (after its two configuration bytes) laid over
    /// `bytes` from `offset` on: the structure's header stays valid, so the
    /// fuzzer reaches the code behind it (tables, indices, tags, lengths).
    static func overlay(_ input: UnsafeRawBufferPointer, on bytes: MappedBytes, from offset: Int) {
        guard input.count > 2, offset < bytes.count, let base = input.baseAddress else { return }
        (bytes.unsafeBaseAddress + offset).copyMemory(from: base + 2, byteCount: min(input.count - 2, bytes.count - offset))
    }

    /// Two configuration bytes: small numbers for capacities and counts.
    static func knobs(_ input: UnsafeRawBufferPointer) -> (Int, Int) {
        (input.count > 0 ? Int(input[0]) : 0, input.count > 1 ? Int(input[1]) : 0)
    }

    static func serviceLayout(_ input: UnsafeRawBufferPointer) {
        let (a, b) = knobs(input)
        let pattern: MessagingPattern = [.publishSubscribe, .requestResponse, .event][a % 3]
        let config = ServiceLayout.Config(pattern: pattern, payload: PayloadType(name: "fuzz", size: 8, alignment: 8),
                                          maxProducers: 1 + a % 16, maxConsumers: 1 + b % 16, bufferSize: 4, history: 0, maxLoans: 4,
                                          maxBorrowed: 4, overflow: 0, requestSize: 16, responseSize: 16, maxEventID: 8)
        let bytes = place(UnsafeRawBufferPointer(start: nil, count: 0), size: ServiceLayout.size(for: config))
        ServiceLayout.initialize(bytes, config: config)
        overlay(input, on: bytes, from: ServiceLayout.versionOffset) // tables and pattern area
        guard let name = try? ServiceName("fuzz"), let layout = try? ServiceLayout(opening: bytes, name: name) else { return }
        for table in [ServiceLayout.Table.producers, .consumers, .attachments] {
            _ = layout.entries(table).count
        }
    }

    static func publisherPool(_ input: UnsafeRawBufferPointer) {
        let (a, b) = knobs(input)
        let chunks = 1 + a % 32, capacity = 8 * (1 + b % 64)
        let bytes = place(UnsafeRawBufferPointer(start: nil, count: 0),
                          size: ChunkPool.size(chunkCount: chunks, payloadCapacity: capacity, alignment: 8))
        ChunkPool.initialize(bytes, chunkCount: chunks, payloadCapacity: capacity, alignment: 8, portID: 7, serviceHash: 9)
        overlay(input, on: bytes, from: 128) // segment count, chunk headers and payloads
        guard let pool = try? ChunkPool(bytes, expectedPortID: 7, serviceHash: 9) else { return }
        _ = pool.segmentCount()
        for index in 0..<pool.chunkCount {
            _ = bytes.unsafeBaseAddress.load(fromByteOffset: ChunkPool.chunksOffset + index * pool.chunkStride, as: UInt64.self)
        }
    }

    static func subscriberInbox(_ input: UnsafeRawBufferPointer) {
        let (a, b) = knobs(input)
        let publishers = 1 + a % 4, capacity = 2 << (b % 6)
        let bytes = place(UnsafeRawBufferPointer(start: nil, count: 0),
                          size: SampleInbox.size(maxPublishers: publishers, deliveryCapacity: capacity, returnCapacity: capacity))
        guard (try? SampleInbox.initialize(bytes, maxPublishers: publishers, deliveryCapacity: capacity,
                                               returnCapacity: capacity, portID: 5)) != nil else { return }
        overlay(input, on: bytes, from: 128) // parker, epoch, blocks: owners, counters, both queues
        guard let inbox = try? SampleInbox(bytes, expectedPortID: 5) else { return }
        for block in 0..<inbox.maxPublishers {
            if let queue = try? IndexQueue(attaching: inbox.deliveryRegion(block)) { drain(queue) }
            if let queue = try? IndexQueue(attaching: inbox.returnRegion(block)) { drain(queue) }
        }
        _ = inbox.awaitedPublishers()
        _ = inbox.awaitedPublishers(segments: { _ in 3 })
    }

    static func indexQueue(_ input: UnsafeRawBufferPointer) {
        let (a, _) = knobs(input)
        let capacity = 2 << (a % 8)
        let bytes = place(UnsafeRawBufferPointer(start: nil, count: 0), size: IndexQueue.requiredSize(capacity: capacity))
        guard (try? IndexQueue.initialize(bytes, capacity: capacity)) != nil else { return }
        overlay(input, on: bytes, from: 128) // tail, head and entries (tags and values)
        guard let queue = try? IndexQueue(attaching: bytes) else { return }
        drain(queue)
        if let producer = try? IndexQueue.Producer(queue) {
            for value in 0..<8 { _ = try? producer.writer.push(UInt64(value), overwrite: value % 2 == 0, ordering: .release) }
        }
        drain(queue)
    }

    static func drain(_ queue: IndexQueue) {
        var popped = 0
        while popped < 4096, queue.pop() != nil { popped += 1 }
    }

    static func spscRing(_ input: UnsafeRawBufferPointer) {
        let (a, _) = knobs(input)
        let capacity = 256 << (a % 6)
        let bytes = place(UnsafeRawBufferPointer(start: nil, count: 0), size: MessageRing.requiredSize(capacity: capacity))
        guard (try? MessageRing.initialize(bytes, capacity: capacity)) != nil else { return }
        overlay(input, on: bytes, from: 128) // indices, role slots, flags, parkers, records
        guard let ring = try? MessageRing(attaching: bytes), let consumer = try? ring.consumer() else { return }
        var buffer = [UInt8](repeating: 0, count: capacity)
        for _ in 0..<256 {
            let got = buffer.withUnsafeMutableBytes { try? consumer.tryReceive(into: $0) }
            if got == nil { break }
        }
    }

    static func mpmcQueue(_ input: UnsafeRawBufferPointer) {
        let (a, b) = knobs(input)
        let capacity = 2 << (a % 5), slotSize = 8 * (1 + b % 16)
        let bytes = place(UnsafeRawBufferPointer(start: nil, count: 0), size: MessageQueue.requiredSize(capacity: capacity, slotSize: slotSize))
        guard (try? MessageQueue.initialize(bytes, capacity: capacity, slotSize: slotSize)) != nil else { return }
        overlay(input, on: bytes, from: 128) // positions, parkers, counters, slot states and lengths
        guard let queue = try? MessageQueue(attaching: bytes) else { return }
        var buffer = [UInt8](repeating: 0, count: slotSize)
        for _ in 0..<64 {
            let got = buffer.withUnsafeMutableBytes { try? queue.tryReceive(into: $0) }
            if got == nil { break }
        }
        _ = queue.recoverAbandonedSlots()
        _ = buffer.withUnsafeBytes { try? queue.trySend($0) }
    }

    /// A record of a service recording (`ShmReplay`), as a replaying
    /// subscriber decodes it.
    static func recordedSample(_ input: UnsafeRawBufferPointer) {
        switch RecordedEntry(input) {
        case .sample(_, _, let payload): _ = payload.reduce(0, &+)
        case .descriptor(let type): _ = type.description
        case nil: break
        }
    }

    static func logWire(_ input: UnsafeRawBufferPointer) {
        var decoder = LogWireDecoder()
        decoder.maximumRecordBytes = 1 << 16
        // In two pieces, as a socket would deliver it.
        let cut = input.isEmpty ? 0 : Int(input[0]) % input.count
        _ = try? decoder.feed(input[..<cut])
        _ = try? decoder.feed(input[cut...])
    }

    /// A log whose first segment (after its header, which stays valid so the
    /// records are reached) and meta file are the input; then verify, stat,
    /// a tailer and recovery run over it.
    nonisolated(unsafe) static var logDirectory: String?
    static func logFiles(_ input: UnsafeRawBufferPointer) {
        let directory = logDirectory ?? {
            let path = "/tmp/shm-fuzz-log.\(getpid())"
            logDirectory = path
            return path
        }()
        removeDirectoryOfFiles(directory)
        guard let log = try? Log.create(directory: directory, config: LogConfig(segmentSize: 64 << 10, indexGranularity: 512)) else { return }
        do {
            guard let appender = try? log.appender() else { return }
            _ = try? appender.append("seed")
        }
        let segment = directory + "/0000000000.seg"
        let fd = open(segment, O_RDWR)
        guard fd >= 0 else { return }
        // The index and records (from byte 128), and sometimes a shorter file.
        if let base = input.baseAddress { _ = pwrite(fd, base, min(input.count, 64 << 10 - 128), 128) }
        if input.count > 2, input[0] == 0xC7 { _ = ftruncate(fd, off_t(Int(input[1]) * 512)) }
        close(fd)
        _ = log.verify()
        _ = log.stat()
        if let tailer = try? log.tailer() {
            for _ in 0..<256 {
                do { guard try tailer.tryNext() != nil else { break } } catch { continue }
            }
        }
        // Recovery, as the next appender runs it over what it finds.
        if let appender = try? log.appender() { _ = try? appender.append("after") }
        _ = log.verify()
    }
}
