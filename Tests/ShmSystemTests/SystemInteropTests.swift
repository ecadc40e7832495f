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
}
