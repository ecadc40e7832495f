#if canImport(Glibc)
import Glibc
#endif

/// Copies between descriptors inside the kernel.
package enum FileTransfer {
    /// Sends `count` bytes of the file at `path`, from byte `offset`, to
    /// `destination` (a socket, pipe or file) with `sendfile(2)`: the kernel
    /// copies from the page cache, nothing passes through user space. A
    /// non-blocking destination that is full is waited for (`poll`, 1 s
    /// slices).
    /// - Throws: the failing call's name and `Errno` (`open`, `sendfile`;
    ///   `EIO` if the file ended before `count` bytes).
    package static func sendfile(path: String, offset: Int, count: Int, to destination: Int32) throws(FileTransferError) {
        let source: Int32
        switch valueOrErrno({ open(path, O_RDONLY | O_CLOEXEC) }) {
        case .success(let value): source = value
        case .failure(let e): throw FileTransferError(operation: "open", errno: e)
        }
        defer { closeOwnedDescriptor(source) }
        var position = off_t(offset)
        var remaining = count
        while remaining > 0 {
            switch valueOrErrno({ Glibc.sendfile(destination, source, &position, remaining) }) {
            case .success(let sent):
                guard sent > 0 else { throw FileTransferError(operation: "sendfile", errno: .ioError) }
                remaining -= sent
            case .failure(let e):
                if e == .tryAgain {
                    var p = pollfd(fd: destination, events: Int16(POLLOUT), revents: 0)
                    _ = poll(&p, 1, 1000)
                    continue
                }
                throw FileTransferError(operation: "sendfile", errno: e)
            }
        }
    }
}

/// A failed `FileTransfer` call: which syscall, and its `Errno`.
package struct FileTransferError: Error, Sendable, Equatable {
    package let operation: String
    package let errno: Errno
}
