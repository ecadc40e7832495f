#if canImport(Glibc)
import Glibc
#endif

/// Unbuffered writes to the standard streams with `write(2)`: a line is on
/// the pipe when the call returns (peers and the CLI use this so that a
/// parent reading their output never waits on a stdio buffer).
package enum StandardStreams {
    /// Writes `text` + newline to stdout (fd 1).
    package static func printLine(_ text: String) { write(text + "\n", to: 1) }

    /// Writes `text` + newline to stderr (fd 2).
    package static func printError(_ text: String) { write(text + "\n", to: 2) }

    /// Writes `text` to `fd`, retrying short writes and EINTR.
    package static func write(_ text: String, to fd: Int32) {
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            let n = bytes.withUnsafeBytes { b in valueOrErrno { Glibc.write(fd, b.baseAddress, b.count) } }
            guard case .success(let count) = n, count > 0 else { return }
            bytes = bytes.dropFirst(count)
        }
    }
}

/// Lines from a descriptor (default: stdin), read with `poll(2)` + `read(2)`
/// so that a caller can stop between waits: Swift's `readLine()` retries
/// EINTR inside and cannot be interrupted by a signal.
package final class LineReader {
    package enum Next: Equatable, Sendable {
        /// A line, without its newline.
        case line(String)
        /// Nothing arrived within the wait.
        case nothingYet
        /// End of input (or a read error); a last unterminated line came before.
        case end
    }

    private let fd: Int32
    private var buffer: [UInt8] = []
    private var finished = false

    package init(fd: Int32 = 0) { self.fd = fd }

    /// The next line, waiting at most `waiting` for input.
    package func next(waiting: Duration) -> Next {
        while true {
            if let newline = buffer.firstIndex(of: 10) {
                let line = String(decoding: buffer[..<newline], as: UTF8.self)
                buffer.removeSubrange(...newline)
                return .line(line)
            }
            if finished {
                if buffer.isEmpty { return .end }
                let line = String(decoding: buffer, as: UTF8.self)
                buffer.removeAll()
                return .line(line)
            }
            var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let milliseconds = Int32(clamping: waiting.nanoseconds / 1_000_000)
            let ready = poll(&descriptor, 1, milliseconds)
            if ready == 0 || (ready < 0 && Errno.current == .interrupted) { return .nothingYet }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && Errno.current == .interrupted { return .nothingYet }
            if n <= 0 { finished = true; continue }
            buffer.append(contentsOf: chunk[..<n])
        }
    }
}
