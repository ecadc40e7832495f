#if canImport(Glibc)
import Glibc
#endif
import Testing
import ShmTestSupport
@testable import ShmSystem

/// A file or segment shrunk under a live mapping must never kill the
/// process: the access reads zeros (SIGBUS guard) and the owner of the
/// mapping reports a typed error naming the file and both sizes.
@Suite("Files shrunk under a mapping")
struct ShrunkMappingTests {
    @Test func aFileTruncatedThroughAnotherDescriptorReadsZerosAndIsReported() throws {
        let path = TestSupport.temporaryPath("shrink")
        defer { unlink(path) }
        do {
            let writer = try MappedFile.create(path: path, size: 10 << 20)
            for offset in stride(from: 0, to: 10 << 20, by: 4096) { writer.bytes[offset] = 0xAB }
        }
        let file = try MappedFile(path: path, access: .readOnly)
        #expect(file.mapping.isGuarded)
        #expect(file.bytes[5_000_000 & ~4095] == 0xAB)
        let other = open(path, O_RDWR)
        #expect(other >= 0)
        #expect(ftruncate(other, 0) == 0)
        close(other)
        // Without the guard this read is SIGBUS.
        #expect(file.bytes[5_000_000] == 0)
        #expect(file.bytes[9_000_000] == 0)
        #expect(file.mapping.truncatedPages == 2)
        #expect(throws: MappingError.truncated(path: path, mappedBytes: 10 << 20, fileSize: 0)) { try file.checkIntact() }
        // The process and its other mappings keep working.
        let another = try MappedFile.create(path: path + ".2", size: 4096)
        defer { unlink(path + ".2") }
        another.bytes[1] = 7
        #expect(another.bytes[1] == 7)
        try another.checkIntact()
    }

    @Test func aFileTruncatedByAnotherProcessIsReportedBeforeAnyFault() throws {
        let path = TestSupport.temporaryPath("shrinkproc")
        defer { unlink(path) }
        let file = try MappedFile.create(path: path, size: 1 << 20)
        file.bytes[1000] = 1
        let truncate = try ChildProcess.spawn("/usr/bin/truncate", arguments: ["-s", "4096", path], captureOutput: true)
        #expect(try truncate.wait(timeout: .seconds(10)) == .exited(0))
        // fstat sees it first; then a write past the end goes to a private zero page.
        #expect(throws: MappingError.truncated(path: path, mappedBytes: 1 << 20, fileSize: 4096)) { try file.checkIntact() }
        file.bytes[500_000] = 9
        #expect(file.bytes[1000] == 1) // inside the file: still shared
        #expect(file.mapping.truncatedPages == 1)
    }

    @Test func aSegmentShrunkUnderItsMappingIsReported() throws {
        let name = TestSupport.uniqueName("shrinkseg")
        let segment = try SharedMemorySegment.create(name, size: 1 << 20)
        defer { segment.unlinkIfStillLinked() }
        segment.data.storeBytes(of: UInt64(42), toByteOffset: 0, as: UInt64.self)
        let other = open(SharedMemorySegment.directory + "/" + segment.name.fileName, O_RDWR)
        #expect(other >= 0)
        #expect(ftruncate(other, 8192) == 0)
        close(other)
        #expect(segment.data.load(fromByteOffset: 0, as: UInt64.self) == 42)
        #expect(segment.data.load(fromByteOffset: 512 * 1024, as: UInt64.self) == 0)
        var reported = false
        do { try segment.checkIntact() } catch {
            if case .truncated(let n, let actual, let expected) = error {
                reported = n == name && actual == 8192 && expected == segment.mapping.length
            }
        }
        #expect(reported)
    }

    /// The guard takes only faults in the library's mappings: any other
    /// SIGBUS kills as before, or reaches the application's own handler.
    @Test func faultsOutsideGuardedMappingsAreNotSwallowed() throws {
        let path = TestSupport.temporaryPath("unguarded")
        defer { unlink(path) }
        let unguarded = try TestSupport.runPeer(["sigbus-unguarded", path])
        #expect(unguarded.status == .signaled(SIGBUS), "\(unguarded.output) \(unguarded.error)")
        #expect(unguarded.output.contains("touching") && !unguarded.output.contains("survived"))
        let chained = try TestSupport.runPeer(["sigbus-chained", path])
        #expect(chained.status == .exited(42), "\(chained.output) \(chained.error)")
    }
}
