#if canImport(Glibc)
import Glibc
#endif
import Testing
import ShmTestSupport
@testable import ShmSystem

/// Writes `bytes` to a fresh file at `path` with write(2).
func writeFile(_ path: String, _ bytes: [UInt8]) throws {
    let fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0o644)
    try #require(fd >= 0)
    defer { close(fd) }
    let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    try #require(n == bytes.count)
}

/// Reads the whole file at `path` with read(2).
func readFile(_ path: String) throws -> [UInt8] {
    let fd = open(path, O_RDONLY)
    try #require(fd >= 0)
    defer { close(fd) }
    var result: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n <= 0 { break }
        result += chunk[0..<n]
    }
    return result
}

@Suite("Mapped files")
struct MappedFileTests {
    let path = TestSupport.temporaryPath("file")

    @Test func readOnlyMappingSeesFileContents() throws {
        defer { unlink(path) }
        try writeFile(path, Array("hello mapped world".utf8))
        let file = try MappedFile(path: path)
        #expect(file.count == 18)
        #expect(String(decoding: file.bytes.read(0..<5), as: UTF8.self) == "hello")
        #expect(file.bytes[6] == UInt8(ascii: "m"))
        #expect(Array(file.bytes) == Array("hello mapped world".utf8))
    }

    @Test func sharedWritesReachTheFile() throws {
        defer { unlink(path) }
        try writeFile(path, [UInt8](repeating: 0, count: 10000))
        let file = try MappedFile(path: path, access: .readWrite)
        file.bytes.write(Array("written through memory".utf8), at: 5000)
        file.bytes.storeBytes(of: UInt32(0xdead_beef), toByteOffset: 1, as: UInt32.self) // unaligned
        try file.sync(.synchronous)
        try file.sync(.asynchronous)
        try file.sync(.invalidate)
        let onDisk = try readFile(path)
        #expect(Array(onDisk[5000..<5022]) == Array("written through memory".utf8))
        #expect(file.bytes.load(fromByteOffset: 1, as: UInt32.self) == 0xdead_beef)
        #expect(onDisk[1] == 0xef && onDisk[4] == 0xde)
    }

    @Test func privateCopyOnWriteNeverReachesTheFile() throws {
        defer { unlink(path) }
        try writeFile(path, Array("original".utf8))
        let file = try MappedFile(path: path, access: .copyOnWrite)
        file.bytes.write(Array("modified".utf8))
        #expect(file.bytes.read(0..<8) == Array("modified".utf8))
        try file.sync()
        #expect(try readFile(path) == Array("original".utf8))
        #expect(throws: MappingError.readOnly(path: path)) { try file.grow(to: 100) }
    }

    @Test func anyOffsetIsAlignedForTheCaller() throws {
        defer { unlink(path) }
        let content = (0..<20000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        try writeFile(path, content)
        for offset in [0, 1, 4095, 4096, 4097, 12345] {
            let file = try MappedFile(path: path, offset: offset, length: 100)
            #expect(file.count == 100)
            #expect(file.bytes.read(0..<100) == Array(content[offset..<offset + 100]), "offset \(offset)")
        }
        let tail = try MappedFile(path: path, offset: 19990)
        #expect(tail.count == 10)
    }

    @Test func mappingPastTheEndIsRefused() throws {
        defer { unlink(path) }
        try writeFile(path, [UInt8](repeating: 1, count: 5000))
        #expect(throws: MappingError.beyondEndOfFile(path: path, fileSize: 5000, offset: 0, length: 8192)) {
            try MappedFile(path: path, length: 8192)
        }
        #expect(throws: MappingError.beyondEndOfFile(path: path, fileSize: 5000, offset: 4000, length: 1001)) {
            try MappedFile(path: path, offset: 4000, length: 1001)
        }
        #expect(throws: MappingError.beyondEndOfFile(path: path, fileSize: 5000, offset: 5000, length: 0)) {
            try MappedFile(path: path, offset: 5000)
        }
        let error = #expect(throws: MappingError.self) { try MappedFile(path: path, length: 8192) }
        #expect(error?.description.contains("SIGBUS") == true)
    }

    @Test func badInputIsAClearError() throws {
        defer { unlink(path) }
        #expect(throws: MappingError.open(path: path, .notFound)) { try MappedFile(path: path) }
        try writeFile(path, [])
        #expect(throws: MappingError.emptyFile(path: path)) { try MappedFile(path: path) }
        #expect(throws: MappingError.self) { try MappedFile(path: path, offset: -1) }
        #expect(throws: MappingError.self) { try MappedFile(path: path, length: 0) }
        #expect(throws: MappingError.self) { try MappedFile(path: path, offset: Int.max - 10, length: 100) }
        #expect(throws: MappingError.self) { try MappedFile.create(path: path, size: 0) }
    }

    @Test func growExtendsFileAndMappingAndKeepsOldViewsValid() throws {
        defer { unlink(path) }
        let file = try MappedFile.create(path: path, size: 4096)
        file.bytes.write(Array("start".utf8))
        // Unique mapping: mremap may move it.
        try file.grow(to: 3 * 4096)
        #expect(file.count == 3 * 4096)
        #expect(try file.fileSize() == 3 * 4096)
        #expect(file.bytes.read(0..<5) == Array("start".utf8))
        file.bytes.write(Array("end".utf8), at: 3 * 4096 - 3)

        // A view is held: the old mapping must stay valid.
        let oldView = file.bytes
        try file.grow(to: 1 << 20)
        #expect(file.count == 1 << 20)
        #expect(oldView.read(0..<5) == Array("start".utf8))
        file.bytes.write(Array("far".utf8), at: (1 << 20) - 3)
        #expect(oldView.count == 3 * 4096)

        #expect(throws: MappingError.notGrowing(path: path, current: 1 << 20, requested: 4096)) { try file.grow(to: 4096) }
        try file.sync()
        let onDisk = try readFile(path)
        #expect(onDisk.count == 1 << 20)
        #expect(Array(onDisk[(1 << 20) - 3..<(1 << 20)]) == Array("far".utf8))
    }

    @Test func adviseLockAndPopulate() throws {
        defer { unlink(path) }
        let file = try MappedFile.create(path: path, size: 1 << 20, populate: true)
        for advice: MappingAdvice in [.normal, .sequential, .random, .willNeed, .populateRead, .populateWrite, .dontNeed] {
            try file.advise(advice)
        }
        // MADV_HUGEPAGE applies to anonymous memory (and shmem when enabled);
        // on a regular file it may be refused: that is an error, not a crash.
        do { try file.advise(.hugePage) } catch { #expect(error.description.contains("MADV_HUGEPAGE")) }
        try file.lock()
        try file.unlock()
        try file.bytes.view(4096..<8192).lock()
        try file.bytes.view(4096..<8192).unlock()
    }

    @Test func anotherProcessWritesThroughItsOwnMapping() throws {
        defer { unlink(path) }
        let file = try MappedFile.create(path: path, size: 8192)
        file.bytes.write(Array("from parent".utf8) + [0], at: 100)
        let read = try TestSupport.runPeer(["file-read", path, "100"])
        #expect(read.status == .exited(0), "\(read.error)")
        #expect(read.output == "from parent\n")
        let wrote = try TestSupport.runPeer(["file-write", path, "4000", "from child"])
        #expect(wrote.status == .exited(0), "\(wrote.error)")
        // MAP_SHARED: the child's write is visible in our mapping without re-reading.
        #expect(file.bytes.read(4000..<4010) == Array("from child".utf8))
    }
}
