#if canImport(Glibc)
import Glibc
#endif
import Testing
import SystemPackage
import ShmTestSupport
import ShmSystem

/// swift-system's types where descriptors and errnos cross the API.
@Suite("swift-system interop")
struct SystemInteropTests {
    @Test func errnosConvertBothWays() {
        #expect(ShmSystem.Errno(SystemPackage.Errno.noSpace) == .noSpace)
        #expect(ShmSystem.Errno.notFound.systemErrno == SystemPackage.Errno.noSuchFileOrDirectory)
        #expect(ShmSystem.Errno.exists.systemErrno.rawValue == EEXIST)
    }

    @Test func aMemfdTravelsAsAFileDescriptor() throws {
        let segment = try MemfdSegment.create(label: "system-interop", size: 4096)
        segment.data.storeBytes(of: UInt64(0xFEED_F00D), toByteOffset: 64, as: UInt64.self)
        // What a receiver gets: its own descriptor for the same memfd.
        let received = try segment.unsafeDescriptor.duplicate()
        let adopted = try MemfdSegment(adopting: received)
        #expect(adopted.data.load(fromByteOffset: 64, as: UInt64.self) == 0xFEED_F00D)
        #expect(adopted.unsafeDescriptor.rawValue == received.rawValue)
        let event = try #require(EventDescriptor())
        #expect(event.descriptor.rawValue == event.fileDescriptor)
    }

    /// A descriptor sent over a socket pair arrives as a `FileDescriptor`
    /// the receiver owns; sockets and POSIX segments hand theirs out too.
    @Test func descriptorsCrossSocketsAsFileDescriptors() throws {
        let segment = try MemfdSegment.create(label: "system-interop-socket", size: 4096)
        segment.data.storeBytes(of: UInt64(0xC0FFEE), toByteOffset: 128, as: UInt64.self)
        let (a, b) = try UnixSocket.pair()
        try a.send(segment.unsafeDescriptor, message: [7])
        let (received, message) = try b.receiveFileDescriptor(timeout: .seconds(5))
        #expect(message == [7])
        #expect(received.rawValue != segment.unsafeDescriptor.rawValue)
        let adopted = try MemfdSegment(adopting: received)
        #expect(adopted.data.load(fromByteOffset: 128, as: UInt64.self) == 0xC0FFEE)
        // A socket adopted from a FileDescriptor talks to its peer.
        let (c, d) = try UnixSocket.pair()
        let adoptedSocket = UnixSocket(adopting: try c.descriptor.duplicate())
        try adoptedSocket.send(segment.unsafeDescriptor, message: [9])
        let (again, note) = try d.receiveFileDescriptor(timeout: .seconds(5))
        #expect(note == [9])
        try again.close()
        let named = try SharedMemorySegment.create(TestSupport.uniqueName("interop"), size: 4096)
        #expect(named.unsafeDescriptor.rawValue == named.unsafeFileDescriptor)
    }
}
