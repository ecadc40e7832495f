#if canImport(Glibc)
import Glibc
#endif
import CShm

/// An `eventfd(2)` descriptor: readable while signalled, for callers that
/// wait in their own `poll`/`epoll`/asyncio loop rather than in ours.
/// Non-blocking and close-on-exec; closed when the object goes.
public final class EventDescriptor: @unchecked Sendable {
    /// The descriptor (owned: do not close it).
    public let fileDescriptor: Int32

    /// `eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)`; nil with `Errno.current` set if it fails.
    public init?() {
        let fd = cshm_eventfd()
        guard fd >= 0 else { return nil }
        fileDescriptor = fd
    }

    deinit { closeOwnedDescriptor(fileDescriptor) }

    /// Makes the descriptor readable (adds 1 to its counter).
    public func signal() {
        var one: UInt64 = 1
        _ = withUnsafeBytes(of: &one) { write(fileDescriptor, $0.baseAddress, 8) }
    }

    /// Consumes the signal: the descriptor is not readable afterwards (until
    /// the next `signal`).
    public func drain() {
        var value: UInt64 = 0
        _ = withUnsafeMutableBytes(of: &value) { read(fileDescriptor, $0.baseAddress, 8) }
    }
}
