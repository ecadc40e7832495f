#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CShm

/// A POSIX error number as reported by a failed system call.
///
/// Every error type in swift-shm that wraps a failed syscall carries one of
/// these, so a caller can match on the exact condition (`.noSpace`,
/// `.notFound`, …) and a person reading the message sees both the symbolic
/// name and the C library's text.
public struct Errno: Error, Hashable, Sendable, CustomStringConvertible {
    /// The raw `errno` value.
    public let rawValue: Int32

    @inlinable public init(rawValue: Int32) { self.rawValue = rawValue }

    /// The calling thread's current `errno`.
    public static var current: Errno { Errno(rawValue: cshm_errno()) }

    public static let notPermitted = Errno(rawValue: EPERM)
    public static let notFound = Errno(rawValue: ENOENT)
    public static let noSuchProcess = Errno(rawValue: ESRCH)
    public static let interrupted = Errno(rawValue: EINTR)
    public static let ioError = Errno(rawValue: EIO)
    public static let badFileDescriptor = Errno(rawValue: EBADF)
    public static let tryAgain = Errno(rawValue: EAGAIN)
    public static let noMemory = Errno(rawValue: ENOMEM)
    public static let permissionDenied = Errno(rawValue: EACCES)
    public static let badAddress = Errno(rawValue: EFAULT)
    public static let exists = Errno(rawValue: EEXIST)
    public static let invalidArgument = Errno(rawValue: EINVAL)
    public static let fileTooLarge = Errno(rawValue: EFBIG)
    public static let noSpace = Errno(rawValue: ENOSPC)
    public static let nameTooLong = Errno(rawValue: ENAMETOOLONG)
    public static let timedOut = Errno(rawValue: ETIMEDOUT)
    public static let notSupported = Errno(rawValue: EOPNOTSUPP)
    public static let ownerDead = Errno(rawValue: EOWNERDEAD)
    public static let deadlock = Errno(rawValue: EDEADLK)

    /// The symbolic name (`ENOSPC`) where known, else `errno N`.
    public var name: String {
        switch rawValue {
        case EPERM: "EPERM"
        case ENOENT: "ENOENT"
        case ESRCH: "ESRCH"
        case EINTR: "EINTR"
        case EIO: "EIO"
        case EBADF: "EBADF"
        case EAGAIN: "EAGAIN"
        case ENOMEM: "ENOMEM"
        case EACCES: "EACCES"
        case EFAULT: "EFAULT"
        case EBUSY: "EBUSY"
        case EEXIST: "EEXIST"
        case ENODEV: "ENODEV"
        case EINVAL: "EINVAL"
        case ENFILE: "ENFILE"
        case EMFILE: "EMFILE"
        case EFBIG: "EFBIG"
        case ENOSPC: "ENOSPC"
        case ESPIPE: "ESPIPE"
        case EROFS: "EROFS"
        case EPIPE: "EPIPE"
        case ENAMETOOLONG: "ENAMETOOLONG"
        case ENOSYS: "ENOSYS"
        case ETIMEDOUT: "ETIMEDOUT"
        case EOPNOTSUPP: "EOPNOTSUPP"
        case EOWNERDEAD: "EOWNERDEAD"
        case EDEADLK: "EDEADLK"
        case ECONNREFUSED: "ECONNREFUSED"
        case ECONNRESET: "ECONNRESET"
        case EPROTO: "EPROTO"
        case EOVERFLOW: "EOVERFLOW"
        case EIDRM: "EIDRM"
        default: "errno \(rawValue)"
        }
    }

    public var description: String {
        let text = strerror(rawValue).map { String(cString: $0) } ?? "unknown error"
        return "\(name): \(text)"
    }
}

// MARK: - The one syscall funnel

/// Runs a libc call that reports failure as `-1` + `errno`, retrying on
/// `EINTR`, and returns its result or throws the `Errno`.
@usableFromInline
package func valueOrErrno<I: FixedWidthInteger>(
    retryOnInterrupt: Bool = true,
    _ call: () -> I
) -> Result<I, Errno> {
    while true {
        let result = call()
        if result != -1 { return .success(result) }
        let error = Errno.current
        if retryOnInterrupt && error == .interrupted { continue }
        return .failure(error)
    }
}

/// Like `valueOrErrno` for calls that return the error number directly
/// (`posix_fallocate`, `posix_spawn`, `pthread_*`): 0 is success.
@usableFromInline
package func zeroOrErrno(retryOnInterrupt: Bool = true, _ call: () -> Int32) -> Result<Void, Errno> {
    while true {
        let result = call()
        if result == 0 { return .success(()) }
        if retryOnInterrupt && result == EINTR { continue }
        return .failure(Errno(rawValue: result))
    }
}

/// Closes a descriptor we own. `close` is never retried on EINTR on Linux
/// (the descriptor is released either way); EBADF is a programmer error.
package func closeOwnedDescriptor(_ fd: Int32) {
    guard fd >= 0 else { return }
    let rc = close(fd)
    precondition(rc == 0 || Errno.current != .badFileDescriptor, "closed a descriptor twice (EBADF)")
}
