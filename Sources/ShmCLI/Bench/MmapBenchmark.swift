import ArgumentParser
import Shm
#if canImport(Glibc)
import Glibc
#endif

/// `shm bench mmap`: the widely repeated claim that updating a file through
/// mmap is 2–3x faster than read()/write(), tested as the articles do
/// (10000 ints, add 1 to each, write back), on a large file, and with the
/// file kept open / the mapping kept and reused. No fsync on either side:
/// both finish in the page cache, so the comparison is like for like.
struct MmapBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mmap",
        abstract: "read()/write() versus mmap for updating a file in place.")

    @Option(help: "Ints in the small file (the articles' test).") var ints = 10_000
    @Option(name: .customLong("large-size"), help: "Size of the large file.", transform: Size.parse) var largeSize = Size(bytes: 128 << 20)
    @Option(help: "Iterations for the small file.") var iterations = 3_000
    @Option(name: .customLong("large-iterations"), help: "Iterations for the large file.") var largeIterations = 12
    @Option(help: "Directory for the scratch files.") var directory = "/tmp"
    @Flag(help: "One JSON object per row.") var json = false

    struct Row: Encodable {
        let scenario: String
        let bytes: Int
        let iterations: Int
        let readWrite: Summary
        let mmap: Summary
        /// read/write median ÷ mmap median: > 1 means mmap is faster.
        let ratio: Double

        enum CodingKeys: String, CodingKey {
            case scenario, bytes, iterations, ratio
            case readWrite = "read_write_ns", mmap = "mmap_ns"
        }
    }

    func run() throws {
        warnIfDebugBuild()
        guard ints > 0, largeSize.bytes >= 4096, iterations > 0, largeIterations > 0 else {
            throw CommandFailure("sizes and iteration counts must be positive (large file at least 4 KiB)")
        }
        let smallBytes = ints * 4
        let largeBytes = largeSize.bytes / 4 * 4
        let cases: [(String, Int, Int, Bool)] = [
            ("\(ints) ints, open+update+close each time (the articles' test)", smallBytes, iterations, false),
            ("\(ints) ints, file kept open / mapping kept", smallBytes, iterations * 10, true),
            ("\(ByteCount.format(largeBytes)) file, open+update+close each time", largeBytes, largeIterations, false),
            ("\(ByteCount.format(largeBytes)) file, file kept open / mapping kept", largeBytes, largeIterations, true),
        ]
        var rows: [Row] = []
        for (index, (scenario, bytes, count, kept)) in cases.enumerated() {
            if !json { StandardStreams.write("\r[\(index + 1)/\(cases.count)] \(scenario)…", to: 2) }
            rows.append(try measure(scenario: scenario, bytes: bytes, iterations: count, kept: kept))
        }
        if !json { StandardStreams.write("\r\u{1b}[K", to: 2) }
        if json {
            for row in rows { try printJSONLine(row) }
            return
        }
        StandardStreams.printLine("read()/write() vs mmap: add 1 to every 32-bit int of a file and write it back")
        StandardStreams.printLine("(page cache only, no fsync on either side; medians of per-iteration times; ratio > 1 means mmap is faster)\n")
        var table = Table("CASE", "SIZE", "RUNS", "READ/WRITE p50", "MMAP p50", "READ/WRITE p90", "MMAP p90", "RATIO")
        table.rightAligned = [1, 2, 3, 4, 5, 6, 7]
        for row in rows {
            table.add(row.scenario, ByteCount.format(row.bytes), String(row.iterations),
                      formatNanoseconds(Double(row.readWrite.p50)), formatNanoseconds(Double(row.mmap.p50)),
                      formatNanoseconds(Double(row.readWrite.p90)), formatNanoseconds(Double(row.mmap.p90)),
                      formatRatio(row.ratio))
        }
        StandardStreams.printLine(table.render())
    }

    private func measure(scenario: String, bytes: Int, iterations: Int, kept: Bool) throws -> Row {
        let base = "\(directory)/shm-bench-mmap-\(getpid())"
        let rwPath = base + ".rw", mapPath = base + ".mmap"
        defer { unlink(rwPath); unlink(mapPath) }
        for path in [rwPath, mapPath] { try makeZeroFile(path, bytes: bytes) }
        let warmup = max(1, iterations / 10)

        var rwTimes: [UInt64] = [], mapTimes: [UInt64] = []
        rwTimes.reserveCapacity(iterations)
        mapTimes.reserveCapacity(iterations)
        if kept {
            let fd = open(rwPath, O_RDWR | O_CLOEXEC)
            guard fd >= 0 else { throw CommandFailure("open \(rwPath): \(Errno.current)") }
            defer { close(fd) }
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes, alignment: 64)
            defer { buffer.deallocate() }
            let file = try reporting { try MappedFile(path: mapPath, access: .readWrite) }
            // Alternate the two so drift on a noisy machine hits both alike.
            for i in 0..<(warmup + iterations) {
                let t0 = monotonicNanoseconds()
                try readModifyWrite(fd: fd, buffer: buffer, path: rwPath)
                let t1 = monotonicNanoseconds()
                file.bytes.withUnsafeMutableBytes { addOne($0) }
                let t2 = monotonicNanoseconds()
                if i >= warmup { rwTimes.append(t1 - t0); mapTimes.append(t2 - t1) }
            }
        } else {
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes, alignment: 64)
            defer { buffer.deallocate() }
            for i in 0..<(warmup + iterations) {
                let t0 = monotonicNanoseconds()
                let fd = open(rwPath, O_RDWR | O_CLOEXEC)
                guard fd >= 0 else { throw CommandFailure("open \(rwPath): \(Errno.current)") }
                try readModifyWrite(fd: fd, buffer: buffer, path: rwPath)
                close(fd)
                let t1 = monotonicNanoseconds()
                do {
                    let file = try reporting { try MappedFile(path: mapPath, access: .readWrite) }
                    file.bytes.withUnsafeMutableBytes { addOne($0) }
                }
                let t2 = monotonicNanoseconds()
                if i >= warmup { rwTimes.append(t1 - t0); mapTimes.append(t2 - t1) }
            }
        }
        // Honesty check: both files received exactly the same updates.
        let expected = Int32(truncatingIfNeeded: warmup + iterations)
        for path in [rwPath, mapPath] {
            let check = try reporting { try MappedFile(path: path) }
            let ok = check.bytes.withUnsafeBytes { raw in raw.bindMemory(to: Int32.self).allSatisfy { $0 == expected } }
            guard ok else { throw CommandFailure("verification failed for \(path): not every int is \(expected)") }
        }
        let rw = Summary(rwTimes), mm = Summary(mapTimes)
        return Row(scenario: scenario, bytes: bytes, iterations: iterations, readWrite: rw, mmap: mm,
                   ratio: Double(rw.p50) / Double(max(1, mm.p50)))
    }

    private func makeZeroFile(_ path: String, bytes: Int) throws {
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw CommandFailure("cannot create \(path): \(Errno.current)") }
        defer { close(fd) }
        guard posix_fallocate(fd, 0, off_t(bytes)) == 0 || ftruncate(fd, off_t(bytes)) == 0 else {
            throw CommandFailure("cannot size \(path) to \(bytes) bytes")
        }
    }

    /// pread the whole file, add one to each int, pwrite it back.
    private func readModifyWrite(fd: Int32, buffer: UnsafeMutableRawBufferPointer, path: String) throws {
        var done = 0
        while done < buffer.count {
            let n = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(done))
            guard n > 0 else { throw CommandFailure("read \(path): \(Errno.current)") }
            done += n
        }
        addOne(buffer)
        done = 0
        while done < buffer.count {
            let n = pwrite(fd, buffer.baseAddress! + done, buffer.count - done, off_t(done))
            guard n > 0 else { throw CommandFailure("write \(path): \(Errno.current)") }
            done += n
        }
    }
}

@inline(never)
func addOne(_ raw: UnsafeMutableRawBufferPointer) {
    let ints = raw.bindMemory(to: Int32.self)
    for i in ints.indices { ints[i] &+= 1 }
}
