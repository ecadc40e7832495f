import SystemPackage

// Interoperation with swift-system: its `FileDescriptor` and `Errno` where
// descriptors and error numbers cross this library's API. (Both modules
// name their error type `Errno`: in a file importing both, write
// `ShmSystem.Errno` or `SystemPackage.Errno`.)

extension Errno {
    /// The same error number as swift-system's `Errno`.
    public var systemErrno: SystemPackage.Errno { SystemPackage.Errno(rawValue: rawValue) }

    /// The error number of swift-system's `errno`.
    public init(_ errno: SystemPackage.Errno) { self.init(rawValue: errno.rawValue) }
}

extension EventDescriptor {
    /// The eventfd as swift-system's `FileDescriptor` (owned by this object:
    /// do not close it).
    public var descriptor: FileDescriptor { FileDescriptor(rawValue: fileDescriptor) }
}

extension UnixSocket {
    /// The socket as swift-system's `FileDescriptor` (owned by this object).
    public var descriptor: FileDescriptor { FileDescriptor(rawValue: fileDescriptor) }

    /// Takes ownership of a connected Unix socket from swift-system's
    /// `FileDescriptor` (closed when this object goes).
    public convenience init(adopting descriptor: FileDescriptor, path: String = "") {
        self.init(adopting: descriptor.rawValue, path: path)
    }

    /// Receives a descriptor the peer sent (`SCM_RIGHTS`) as swift-system's
    /// `FileDescriptor`, which the caller then owns; see
    /// `receiveDescriptor(maxMessage:timeout:)`.
    public func receiveFileDescriptor(maxMessage: Int = 4096, timeout: Duration = .seconds(5)) throws(SocketError)
        -> (descriptor: FileDescriptor, message: [UInt8]) {
        let (fd, message) = try receiveDescriptor(maxMessage: maxMessage, timeout: timeout)
        return (FileDescriptor(rawValue: fd), message)
    }

    /// Sends `descriptor` to the peer (`SCM_RIGHTS`) with `message`.
    public func send(_ descriptor: FileDescriptor, message: [UInt8] = [0]) throws(SocketError) {
        try send(descriptor: descriptor.rawValue, message: message)
    }
}

extension MemfdSegment {
    /// The memfd as swift-system's `FileDescriptor`, to pass to another
    /// process (owned by the segment: do not close it).
    public var unsafeDescriptor: FileDescriptor { FileDescriptor(rawValue: unsafeFileDescriptor) }
}

extension MemfdSegment {
    /// Opens a memfd segment from swift-system's `FileDescriptor` received
    /// from another process, taking ownership of it (see `init(adopting:…)`).
    public convenience init(adopting descriptor: FileDescriptor, access: MappingAccess = .readWrite, kind: SegmentKind? = nil,
                            requireSeals: Bool = true, timeout: Duration = .seconds(2)) throws(SegmentError) {
        try self.init(adopting: descriptor.rawValue, access: access, kind: kind, requireSeals: requireSeals, timeout: timeout)
    }
}

extension SharedMemorySegment {
    /// The segment's descriptor as swift-system's `FileDescriptor` (owned by
    /// the segment: do not close it; `fstat`, `fchmod`, passing it on).
    public var unsafeDescriptor: FileDescriptor { FileDescriptor(rawValue: unsafeFileDescriptor) }
}
