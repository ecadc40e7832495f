#if canImport(Glibc)
import Glibc
#endif
import Testing
import ShmTestSupport
@testable import ShmSystem

/// Writes `bytes` as the raw contents of `/dev/shm/<fileName>` (a foreign
/// or damaged object for the open path to reject).
func plantObject(_ fileName: String, _ bytes: [UInt8]) throws {
    try writeFile(SharedMemorySegment.directory + "/" + fileName, bytes)
}

@Suite("POSIX segments")
struct SharedMemorySegmentTests {
    @Test func createOpenWriteRead() throws {
        let name = TestSupport.uniqueName()
        let created = try SharedMemorySegment.create(name, size: 10000)
        #expect(created.isCreator)
        #expect(created.info.dataSize == 12288) // rounded up to whole pages
        #expect(created.info.totalSize == 4096 + 12288)
        #expect(created.info.kind == .raw)
        #expect(created.info.creator == .current)
        #expect(created.mode == 0o600)
        #expect(created.ownerUID == getuid())
        created.data.write(Array("shared".utf8), at: 10)

        let opened = try SharedMemorySegment.open(name)
        #expect(!opened.isCreator)
        #expect(opened.info == created.info)
        #expect(opened.data.read(10..<16) == Array("shared".utf8))
        opened.data[0] = 42
        #expect(created.data[0] == 42)
    }

    @Test func modeIsExactAndVisible() throws {
        let name = TestSupport.uniqueName()
        let previous = umask(0o077)
        defer { umask(previous) }
        let segment = try SharedMemorySegment.create(name, size: 4096, mode: 0o640)
        #expect(segment.mode == 0o640)
        var st = stat()
        #expect(stat("/dev/shm/" + segment.name.fileName, &st) == 0)
        #expect(st.st_mode & 0o777 == 0o640)
    }

    @Test func exclusiveCreateAndOpenOrCreate() throws {
        let name = TestSupport.uniqueName()
        let first = try SharedMemorySegment.create(name, size: 4096)
        #expect(throws: SegmentError.alreadyExists(name: name)) { try SharedMemorySegment.create(name, size: 4096) }
        let second = try SharedMemorySegment.openOrCreate(try SegmentName(name), size: 4096)
        #expect(!second.isCreator)
        #expect(throws: SegmentError.truncated(name: name, actualSize: 4096, expectedSize: 8192)) {
            try SharedMemorySegment.openOrCreate(try SegmentName(name), size: 8192)
        }
        _ = first
        let fresh = try SharedMemorySegment.openOrCreate(try SegmentName(TestSupport.uniqueName()), size: 100)
        #expect(fresh.isCreator)
    }

    @Test func initializerRunsBeforeAnyoneCanOpen() throws {
        let name = TestSupport.uniqueName()
        let segmentName = try SegmentName(name)
        let segment = try SharedMemorySegment.create(name, size: 4096) { data in
            data.write(Array("initialized".utf8))
            // Not yet visible under its name while initializing.
            #expect(!SharedMemorySegment.exists(segmentName))
        }
        #expect(SharedMemorySegment.exists(segment.name))
        #expect(try SharedMemorySegment.open(name).data.read(0..<11) == Array("initialized".utf8))
    }

    @Test func failedInitializerLeavesNothing() throws {
        struct Boom: Error {}
        let name = TestSupport.uniqueName()
        #expect(throws: SegmentError.self) {
            try SharedMemorySegment.create(name, size: 4096) { _ in throw Boom() }
        }
        #expect(!SharedMemorySegment.exists(try SegmentName(name)))
        #expect(SegmentDirectory.entries().allSatisfy { !$0.hasSuffix(name) })
    }

    @Test func unlinkAndDoubleUnlink() throws {
        let name = TestSupport.uniqueName()
        let segment = try SharedMemorySegment.create(name, size: 4096, lifetime: .persistent)
        let other = try SharedMemorySegment.open(name)
        try segment.unlink()
        #expect(!SharedMemorySegment.exists(segment.name))
        #expect(other.currentState == .retired)
        other.data[0] = 1 // existing mappings stay valid
        #expect(throws: SegmentError.notFound(name: name)) { try segment.unlink() }
        #expect(throws: SegmentError.notFound(name: name)) { try SharedMemorySegment.unlink(try SegmentName(name)) }
        #expect(throws: SegmentError.notFound(name: name)) { try SharedMemorySegment.open(name) }
    }

    @Test func lifetimeFollowsTheCreatorHandle() throws {
        let owned = TestSupport.uniqueName(), kept = TestSupport.uniqueName()
        do {
            _ = try SharedMemorySegment.create(owned, size: 4096)
            _ = try SharedMemorySegment.create(kept, size: 4096, lifetime: .persistent)
        }
        #expect(!SharedMemorySegment.exists(try SegmentName(owned)))
        #expect(SharedMemorySegment.exists(try SegmentName(kept)))
        try SharedMemorySegment.unlink(try SegmentName(kept))
    }

    @Test func releasedCreatorDoesNotUnlinkANewSegmentOfTheSameName() throws {
        let name = TestSupport.uniqueName()
        var first: SharedMemorySegment? = try SharedMemorySegment.create(name, size: 4096)
        try first!.unlink()
        let second = try SharedMemorySegment.create(name, size: 4096)
        first = nil
        #expect(SharedMemorySegment.exists(second.name))
        _ = first
    }

    @Test func badSizesAndNames() throws {
        let name = TestSupport.uniqueName()
        #expect(throws: SegmentError.self) { try SharedMemorySegment.create(name, size: 0) }
        #expect(throws: SegmentError.self) { try SharedMemorySegment.create(name, size: -4096) }
        #expect(throws: SegmentError.self) { try SharedMemorySegment.create(name, size: 1 << 50) }
        #expect(throws: SegmentError.self) { try SharedMemorySegment.create("bad/name", size: 4096) }
        #expect(throws: SegmentError.self) { try SharedMemorySegment.create("", size: 4096) }
        #expect(throws: SegmentError.notFound(name: name)) { try SharedMemorySegment.open(name) }
        #expect(!SharedMemorySegment.exists(try SegmentName(name)))
    }

    @Test func tooLittleSpaceFailsAtCreateAndNamesWhatIsAvailable() throws {
        let name = TestSupport.uniqueName()
        var fs = statvfs()
        try #require(statvfs("/dev/shm", &fs) == 0)
        let capacity = Int(fs.f_blocks) * Int(fs.f_frsize)
        // More than the whole filesystem: tmpfs refuses before allocating anything.
        let error = #expect(throws: SegmentError.self) {
            try SharedMemorySegment.create(name, size: capacity + (1 << 30))
        }
        guard case .insufficientSpace(let n, let requested, let available, let filesystem) = error else {
            Issue.record("expected insufficientSpace, got \(String(describing: error))")
            return
        }
        #expect(n == name)
        #expect(requested > capacity)
        #expect(available > 0 && available <= capacity)
        #expect(filesystem == "/dev/shm")
        #expect(error!.description.contains("free"))
        #expect(!SharedMemorySegment.exists(try SegmentName(name)))
        #expect(SegmentDirectory.entries().allSatisfy { !$0.hasSuffix(name) })
    }

    @Test func foreignObjectAtOurNameIsATypedError() throws {
        let name = try SegmentName(TestSupport.uniqueName())
        defer { _ = shm_unlink(name.posixName) }
        try plantObject(name.fileName, Array(repeating: 0x41, count: 8192))
        let error = #expect(throws: SegmentError.self) { try SharedMemorySegment.open(name) }
        guard case .foreign = error else { Issue.record("got \(String(describing: error))"); return }
        #expect(throws: SegmentError.alreadyExists(name: name.name)) { try SharedMemorySegment.create(name, size: 4096) }

        try plantObject(name.fileName, Array(repeating: 0x41, count: 100))
        #expect(throws: SegmentError.truncated(name: name.name, actualSize: 100, expectedSize: 4096)) {
            try SharedMemorySegment.open(name)
        }
        try plantObject(name.fileName, [])
        #expect(throws: SegmentError.foreign(name: name.name, reason: "the object is empty")) {
            try SharedMemorySegment.open(name)
        }
        try plantObject(name.fileName, Array(repeating: 0, count: 8192))
        let zeros = #expect(throws: SegmentError.self) { try SharedMemorySegment.open(name, timeout: .milliseconds(50)) }
        guard case .foreign = zeros else { Issue.record("got \(String(describing: zeros))"); return }
    }

    /// Creates a valid segment, then damages a copy of its bytes at `name`.
    func damaged(_ damage: (inout [UInt8]) -> Void) throws -> SegmentName {
        let source = try SharedMemorySegment.create(TestSupport.uniqueName(), size: 8192)
        var bytes = Array(source.mapping.bytes)
        damage(&bytes)
        let name = try SegmentName(TestSupport.uniqueName())
        try plantObject(name.fileName, bytes)
        return name
    }

    @Test func newerLayoutVersionIsRefused() throws {
        let name = try damaged { $0[8] = 2 }
        defer { _ = shm_unlink(name.posixName) }
        #expect(throws: SegmentError.incompatibleVersion(name: name.name, found: 2, supported: 1)) {
            try SharedMemorySegment.open(name)
        }
    }

    @Test func corruptHeaderIsRefused() throws {
        let name = try damaged { $0[30] ^= 0xff } // totalSize, covered by the checksum
        defer { _ = shm_unlink(name.posixName) }
        #expect(throws: SegmentError.corruptHeader(name: name.name, reason: "header checksum mismatch")) {
            try SharedMemorySegment.open(name)
        }
    }

    @Test func truncatedSegmentIsRefused() throws {
        let name = try damaged { $0.removeLast(4096) }
        defer { _ = shm_unlink(name.posixName) }
        #expect(throws: SegmentError.truncated(name: name.name, actualSize: 8192, expectedSize: 12288)) {
            try SharedMemorySegment.open(name)
        }
    }

    @Test func kindMismatchIsRefused() throws {
        let name = TestSupport.uniqueName()
        let segment = try SharedMemorySegment.create(name, size: 4096, kind: SegmentKind("RING"))
        #expect(throws: SegmentError.kindMismatch(name: name, expected: SegmentKind("LOG_").rawValue,
                                                  found: SegmentKind("RING").rawValue)) {
            try SharedMemorySegment.open(name, kind: SegmentKind("LOG_"))
        }
        #expect(try SharedMemorySegment.open(name, kind: SegmentKind("RING")).info == segment.info)
    }

    @Test func readOnlyOpen() throws {
        let name = TestSupport.uniqueName()
        let segment = try SharedMemorySegment.create(name, size: 4096)
        segment.data[1] = 9
        let reader = try SharedMemorySegment.open(name, access: .readOnly)
        #expect(reader.data[1] == 9)
        #expect(reader.mapping.access == .readOnly)
    }

    @Test func transparentHugePagesAreBestEffortAndRequiredIsAClearError() throws {
        let segment = try SharedMemorySegment.create(TestSupport.uniqueName(), size: 4 << 20, hugePages: .transparent)
        let support = HugePageSupport.current
        if support.transparentShmemMode == "never" {
            #expect(segment.pageBacking == .normal)
        }
        let error = #expect(throws: SegmentError.self) {
            try SharedMemorySegment.create(TestSupport.uniqueName(), size: 4 << 20, hugePages: .required)
        }
        guard case .hugePagesUnavailable = error else { Issue.record("got \(String(describing: error))"); return }
    }
}

@Suite("POSIX segments across processes")
struct SharedMemorySegmentProcessTests {
    @Test func peerWritesAndParentReads() throws {
        let name = TestSupport.uniqueName()
        let segment = try SharedMemorySegment.create(name, size: 4096)
        let result = try TestSupport.runPeer(["posix-write", name, "100", "written by peer"])
        #expect(result.status == .exited(0), "\(result.error)")
        #expect(segment.data.read(100..<115) == Array("written by peer".utf8))
    }

    @Test func parentWritesAndPeerReads() throws {
        let name = TestSupport.uniqueName()
        let segment = try SharedMemorySegment.create(name, size: 4096)
        segment.data.write(Array("written by parent".utf8) + [0], at: 7)
        let result = try TestSupport.runPeer(["posix-read", name, "7"])
        #expect(result.status == .exited(0), "\(result.error)")
        #expect(result.output == "written by parent\n")
    }

    @Test func pingPongWhileBothAreRunning() throws {
        let name = TestSupport.uniqueName()
        let segment = try SharedMemorySegment.create(name, size: 4096)
        let peer = try TestSupport.spawnPeer(["posix-echo", name])
        segment.data.write(Array("ping".utf8) + [0], at: 0)
        #expect(try peer.wait(timeout: .seconds(20)) == .exited(0), "\(peer.errorText)")
        let reply = String(decoding: segment.data.read(256..<512).prefix { $0 != 0 }, as: UTF8.self)
        #expect(reply == "pong from \(peer.pid)")
    }

    @Test func peerGetsClearErrorsForBadSegments() throws {
        let missing = try TestSupport.runPeer(["posix-open", TestSupport.uniqueName()])
        #expect(missing.status == .exited(3))
        #expect(missing.error.contains("no segment named"))
        let name = try SegmentName(TestSupport.uniqueName())
        defer { _ = shm_unlink(name.posixName) }
        try plantObject(name.fileName, Array(repeating: 0x5a, count: 4096))
        let foreign = try TestSupport.runPeer(["posix-open", name.name])
        #expect(foreign.status == .exited(3))
        #expect(foreign.error.contains("is not a swift-shm segment"))
    }

    @Test func segmentOfAKilledPeerIsReportedAsOwnedByADeadProcess() throws {
        try TestSupport.aroundDeadPeers {
            let name = TestSupport.uniqueName()
            let segmentName = try SegmentName(name)
            defer { try? SharedMemorySegment.unlink(segmentName) }
            let peer = try TestSupport.spawnPeer(["posix-hold", name, "65536"])
            #expect(try peer.readLine(timeout: .seconds(20)) == "ready")
            let before = try #require(SegmentDirectory.inspect(segmentName))
            #expect(before.info?.creator.pid == peer.pid)
            #expect(before.creatorLiveness == .alive)
            peer.kill(SIGKILL)
            #expect(try peer.wait(timeout: .seconds(10)) == .signaled(SIGKILL))
            let after = try #require(SegmentDirectory.list().first { $0.name == segmentName })
            #expect(after.creatorLiveness == .dead)
            #expect(after.size == 4096 + 65536)
            // The segment itself survives its creator and is still usable.
            let reopened = try SharedMemorySegment.open(name)
            #expect(reopened.info.creator.pid == peer.pid)
        }
    }
}
