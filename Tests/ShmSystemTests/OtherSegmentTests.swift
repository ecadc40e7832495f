#if canImport(Glibc)
import Glibc
#endif
import CShm
import CShmTestSupport
import Testing
import ShmTestSupport
@testable import ShmSystem

@Suite("memfd segments and descriptor passing")
struct MemfdSegmentTests {
    @Test func createIsSealedAndValidated() throws {
        let segment = try MemfdSegment.create(label: "unit", size: 5000)
        #expect(segment.info.dataSize == 8192)
        #expect(segment.seals.contains([.shrink, .grow, .seal]))
        #expect(ftruncate(segment.unsafeFileDescriptor, 0) == -1) // F_SEAL_SHRINK holds
        #expect(Errno.current == .notPermitted)
    }

    @Test func descriptorPassedOverAUnixSocketToAnotherProcess() throws {
        let segment = try MemfdSegment.create(label: "passed", size: 4096)
        segment.data.write(Array("over SCM_RIGHTS".utf8) + [0])
        let (mine, theirs) = try UnixSocket.pair()
        let peer = try TestSupport.spawnPeer(["memfd-receive", "3", "512", "reply from peer"],
                                             inheriting: [3: theirs.fileDescriptor])
        try segment.send(over: mine)
        #expect(try peer.wait(timeout: .seconds(20)) == .exited(0), "\(peer.errorText)")
        #expect(peer.outputText == "received passed 4096 sealed=true\nover SCM_RIGHTS\n")
        #expect(segment.data.read(512..<527) == Array("reply from peer".utf8))
    }

    @Test func descriptorInheritedBySpawnedChild() throws {
        let segment = try MemfdSegment.create(label: "inherited", size: 4096)
        segment.data.write(Array("inherited".utf8) + [0])
        let peer = try TestSupport.spawnPeer(["memfd-inherited", "5", "100", "child was here"],
                                             inheriting: [5: segment.unsafeFileDescriptor])
        #expect(try peer.wait(timeout: .seconds(20)) == .exited(0), "\(peer.errorText)")
        #expect(peer.outputText == "inherited\n")
        #expect(segment.data.read(100..<114) == Array("child was here".utf8))
    }

    @Test func unsealedOrForeignDescriptorIsRefused() throws {
        let fd = cshm_memfd_create("raw", cshm_mfd_cloexec() | cshm_mfd_allow_sealing())
        try #require(fd >= 0)
        try #require(ftruncate(fd, 8192) == 0)
        let dup1 = dup(fd), dup2 = dup(fd)
        defer { close(fd) }
        #expect(throws: SegmentError.notSealed(name: "memfd(fd \(dup1))", missing: "shrinking (F_SEAL_SHRINK)")) {
            try MemfdSegment(adopting: dup1)
        }
        let error = #expect(throws: SegmentError.self) {
            try MemfdSegment(adopting: dup2, requireSeals: false, timeout: .milliseconds(50))
        }
        guard case .foreign = error else { Issue.record("got \(String(describing: error))"); return }
    }

    @Test func socketWithoutDescriptorOrClosedPeerIsAnError() throws {
        let (a, b) = try UnixSocket.pair()
        try a.send([1, 2, 3])
        #expect(throws: SocketError.noDescriptor) { try b.receiveDescriptor(timeout: .seconds(2)) }
        #expect(throws: SocketError.timedOut(.milliseconds(50))) { try b.receiveDescriptor(timeout: .milliseconds(50)) }
    }

    @Test func listenerAcceptsAndPassesADescriptor() throws {
        let path = TestSupport.temporaryPath("sock")
        let listener = try UnixSocket.Listener(path: path)
        let client = try UnixSocket.connect(path: path)
        let server = try listener.accept(timeout: .seconds(5))
        let segment = try MemfdSegment.create(label: "via-path", size: 4096)
        segment.data[0] = 77
        try segment.send(over: server)
        let received = try MemfdSegment.receive(from: client)
        #expect(received.data[0] == 77)
        #expect(received.label == "via-path")
    }

    @Test func hugePagePolicies() throws {
        let support = HugePageSupport.current
        if support.reservedTotal == 0 {
            let error = #expect(throws: SegmentError.self) {
                try MemfdSegment.create(label: "huge", size: 4 << 20, hugePages: .required)
            }
            #expect(error?.description.contains("HugePages_Total is 0") == true)
            let preferred = try MemfdSegment.create(label: "huge", size: 4 << 20, hugePages: .preferred)
            #expect(preferred.pageBacking != .hugeTLB(pageSize: support.hugePageSize))
        } else {
            let segment = try MemfdSegment.create(label: "huge", size: 4 << 20, hugePages: .required)
            #expect(segment.pageBacking == .hugeTLB(pageSize: support.hugePageSize))
        }
    }
}

@Suite("System V segments")
struct SystemVSegmentTests {
    /// A key unlikely to collide with anything else on the machine.
    func uniqueKey() -> key_t {
        key_t(bitPattern: 0x5300_0000 | (UInt32(getpid()) & 0xffff) << 8 | UInt32.random(in: 0..<256))
    }

    @Test func createOpenAcrossProcessesAndRemove() throws {
        let key = uniqueKey()
        let segment = try SystemVSegment.create(key: key, size: 8192, populate: true)
        defer { try? segment.remove() }
        #expect(segment.info.dataSize == 8192)
        let status = try segment.status()
        #expect(status.size == 4096 + 8192 && status.mode == 0o600 && status.attachCount >= 1)
        #expect(throws: SegmentError.self) { try SystemVSegment.create(key: key, size: 4096) }

        let result = try TestSupport.runPeer(["sysv-write", String(key), "64", "system five"])
        #expect(result.status == .exited(0), "\(result.error)")
        #expect(segment.data.read(64..<75) == Array("system five".utf8))
        let again = try SystemVSegment.open(key: key)
        #expect(again.info == segment.info)

        try segment.remove()
        #expect(throws: SegmentError.self) { try SystemVSegment.open(key: key) }
    }

    @Test func ftokKeysAndForeignSegments() throws {
        let path = TestSupport.temporaryPath("ftok")
        try writeFile(path, [0])
        defer { unlink(path) }
        let key = try SystemVSegment.key(path: path, projectID: 7)
        #expect(try SystemVSegment.key(path: path, projectID: 7) == key)
        #expect(throws: SegmentError.self) { try SystemVSegment.key(path: "/nonexistent/x", projectID: 1) }

        // Another program's segment: no header.
        let id = shmget(key, 4096, IPC_CREAT | IPC_EXCL | 0o600)
        try #require(id >= 0)
        defer { _ = shmctl(id, IPC_RMID, nil) }
        let error = #expect(throws: SegmentError.self) { try SystemVSegment.open(key: key, timeout: .milliseconds(50)) }
        guard case .foreign = error else { Issue.record("got \(String(describing: error))"); return }
        let raw = try SystemVSegment.attachForeign(key: key)
        raw.bytes[0] = 1
        #expect(raw.length == 4096)
    }

    @Test func missingKeyIsNotFound() {
        #expect(throws: SegmentError.notFound(name: "sysv key 0x5fffffff")) {
            try SystemVSegment.open(key: 0x5fff_ffff)
        }
    }
}

@Suite("Anonymous shared memory")
struct AnonymousSharedMemoryTests {
    @Test func sharedWithAForkedChild() throws {
        let (mapping, backing) = try AnonymousSharedMemory.map(size: 8192)
        #expect(backing == .normal)
        #expect(cshm_test_fork_fill(mapping.unsafeBaseAddress, 8192, 0xab) == 0)
        #expect(mapping.bytes.allSatisfy { $0 == 0xab })
    }

    @Test func privateMemoryIsNotShared() throws {
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 4096)
        defer { buffer.deallocate() }
        buffer.initializeMemory(as: UInt8.self, repeating: 0, count: 4096)
        #expect(cshm_test_fork_fill(buffer, 4096, 0xcd) == 0)
        #expect(buffer.load(as: UInt8.self) == 0)
    }

    @Test func hugePagePolicies() throws {
        let support = HugePageSupport.current
        let (_, transparent) = try AnonymousSharedMemory.map(size: 4 << 20, hugePages: .transparent)
        #expect(transparent != .hugeTLB(pageSize: support.hugePageSize))
        if support.reservedFree == 0 {
            let error = #expect(throws: MappingError.self) { try AnonymousSharedMemory.map(size: 4 << 20, hugePages: .required) }
            guard case .hugePagesUnavailable(let reason) = error else { Issue.record("got \(String(describing: error))"); return }
            #expect(reason.contains("MAP_HUGETLB"))
            let (_, preferred) = try AnonymousSharedMemory.map(size: 4 << 20, hugePages: .preferred)
            #expect(preferred != .hugeTLB(pageSize: support.hugePageSize))
        }
        #expect(throws: MappingError.self) { try AnonymousSharedMemory.map(size: 0) }
    }
}
