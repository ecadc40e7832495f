#if canImport(Glibc)
import Glibc
#endif
import CShm

/// Why a Unix-domain socket operation failed.
public enum SocketError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A socket call failed; `path` is the socket path where there is one.
    case system(operation: String, path: String, Errno)
    /// The message arrived without the descriptor the caller expected.
    case noDescriptor
    /// The peer closed the connection.
    case closed
    /// Nothing arrived within the timeout.
    case timedOut(Duration)
    /// The socket path does not fit in `sockaddr_un` (107 bytes).
    case pathTooLong(String)

    public var description: String {
        switch self {
        case .system(let op, let path, let e): path.isEmpty ? "\(op) failed: \(e)" : "\(op) on '\(path)' failed: \(e)"
        case .noDescriptor: "the message carried no file descriptor"
        case .closed: "the peer closed the socket"
        case .timedOut(let timeout): "nothing arrived within \(timeout.timeoutDescription)"
        case .pathTooLong(let path): "socket path '\(path)' is longer than 107 bytes"
        }
    }
}

/// A connected Unix-domain socket (`SOCK_SEQPACKET`: message boundaries are
/// kept) that can carry file descriptors (`SCM_RIGHTS`), which is how a
/// memfd segment reaches an unrelated process.
public final class UnixSocket: @unchecked Sendable {
    /// The socket descriptor, owned by this object.
    public let fileDescriptor: Int32
    let path: String

    /// Takes ownership of a connected socket descriptor (e.g. one inherited
    /// from a parent process).
    public init(adopting fd: Int32, path: String = "") {
        self.fileDescriptor = fd
        self.path = path
    }

    deinit { closeOwnedDescriptor(fileDescriptor) }

    /// A connected pair (`socketpair(AF_UNIX, SOCK_SEQPACKET)`), both ends close-on-exec.
    public static func pair() throws(SocketError) -> (UnixSocket, UnixSocket) {
        var fds: [Int32] = [-1, -1]
        if case .failure(let e) = valueOrErrno({ socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) }) {
            throw .system(operation: "socketpair", path: "", e)
        }
        return (UnixSocket(adopting: fds[0]), UnixSocket(adopting: fds[1]))
    }

    /// Connects to a listening socket at `path` (`connect(2)`).
    public static func connect(path: String) throws(SocketError) -> UnixSocket {
        let fd = try makeSocket(path: path)
        let rc = try withAddress(path) { addr, len in Glibc.connect(fd, addr, len) }
        if rc != 0 {
            let e = Errno.current
            closeOwnedDescriptor(fd)
            throw .system(operation: "connect", path: path, e)
        }
        return UnixSocket(adopting: fd, path: path)
    }

    /// A listening socket bound to `path` (`bind(2)` + `listen(2)`).
    public final class Listener: @unchecked Sendable {
        public let fileDescriptor: Int32
        public let path: String

        /// Binds and listens at `path`, replacing a stale socket file left by
        /// a dead process.
        public init(path: String, backlog: Int32 = 16) throws(SocketError) {
            let fd = try makeSocket(path: path)
            _ = unlink(path)
            let rc = try withAddress(path) { addr, len in bind(fd, addr, len) }
            if rc != 0 || listen(fd, backlog) != 0 {
                let e = Errno.current
                closeOwnedDescriptor(fd)
                throw .system(operation: "bind/listen", path: path, e)
            }
            self.fileDescriptor = fd
            self.path = path
        }

        deinit {
            closeOwnedDescriptor(fileDescriptor)
            _ = unlink(path)
        }

        /// Accepts one connection (`accept4(2)`), waiting at most `timeout`.
        public func accept(timeout: Duration = .seconds(5)) throws(SocketError) -> UnixSocket {
            try waitReadable(fileDescriptor, timeout: timeout)
            switch valueOrErrno({ cshm_accept_cloexec(fileDescriptor) }) {
            case .success(let fd): return UnixSocket(adopting: fd, path: path)
            case .failure(let e): throw .system(operation: "accept", path: path, e)
            }
        }
    }

    /// Sends `message` (at least one byte) with `descriptor` attached
    /// (`sendmsg(2)` with `SCM_RIGHTS`). The receiver gets its own descriptor
    /// for the same open file; this process keeps its own.
    public func send(descriptor: Int32, message: [UInt8] = [0]) throws(SocketError) {
        let payload = message.isEmpty ? [0] : message
        let n = payload.withUnsafeBytes { cshm_send_fd(fileDescriptor, descriptor, $0.baseAddress, $0.count) }
        if n < 0 { throw .system(operation: "sendmsg(SCM_RIGHTS)", path: path, .current) }
    }

    /// Receives one message and the descriptor attached to it (`recvmsg(2)`),
    /// waiting at most `timeout`. The caller owns the returned descriptor.
    public func receiveDescriptor(maxMessage: Int = 4096, timeout: Duration = .seconds(5)) throws(SocketError) -> (descriptor: Int32, message: [UInt8]) {
        try waitReadable(fileDescriptor, timeout: timeout)
        var buffer = [UInt8](repeating: 0, count: maxMessage)
        var fd: Int32 = -1
        let n = buffer.withUnsafeMutableBytes { cshm_recv_fd(fileDescriptor, &fd, $0.baseAddress, $0.count) }
        if n < 0 { throw .system(operation: "recvmsg(SCM_RIGHTS)", path: path, .current) }
        if n == 0 && fd < 0 { throw .closed }
        guard fd >= 0 else { throw .noDescriptor }
        return (fd, Array(buffer[0..<n]))
    }

    /// Sends one message (`send(2)`).
    public func send(_ message: [UInt8]) throws(SocketError) {
        let n = message.withUnsafeBytes { buffer in
            valueOrErrno { Glibc.send(fileDescriptor, buffer.baseAddress, buffer.count, Int32(MSG_NOSIGNAL)) }
        }
        if case .failure(let e) = n { throw .system(operation: "send", path: path, e) }
    }

    /// Receives one message (`recv(2)`), waiting at most `timeout`.
    public func receive(maxMessage: Int = 65536, timeout: Duration = .seconds(5)) throws(SocketError) -> [UInt8] {
        try waitReadable(fileDescriptor, timeout: timeout)
        var buffer = [UInt8](repeating: 0, count: maxMessage)
        let n = buffer.withUnsafeMutableBytes { b in valueOrErrno { recv(fileDescriptor, b.baseAddress, b.count, 0) } }
        switch n {
        case .success(0): throw .closed
        case .success(let count): return Array(buffer[0..<count])
        case .failure(let e): throw .system(operation: "recv", path: path, e)
        }
    }

    private static func makeSocket(path: String) throws(SocketError) -> Int32 {
        guard path.utf8.count < 108 else { throw .pathTooLong(path) }
        switch valueOrErrno({ socket(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }) {
        case .success(let fd): return fd
        case .failure(let e): throw .system(operation: "socket", path: path, e)
        }
    }

    private static func withAddress(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> Int32) throws(SocketError) -> Int32 {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { throw .pathTooLong(path) }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                body($0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
    }
}

/// Waits until `fd` is readable (`poll(2)`), or throws `.timedOut`.
func waitReadable(_ fd: Int32, timeout: Duration) throws(SocketError) {
    var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
    let ms = Int32(clamping: timeout.nanoseconds / 1_000_000)
    switch valueOrErrno({ poll(&pfd, 1, ms) }) {
    case .success(0): throw .timedOut(.milliseconds(Int64(ms)))
    case .success: return
    case .failure(let e): throw .system(operation: "poll", path: "", e)
    }
}
