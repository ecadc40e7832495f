#if canImport(Glibc)
import Glibc
#endif

/// Unbuffered writes to the standard streams with `write(2)`: a line is on
/// the pipe when the call returns (peers and the CLI use this so that a
/// parent reading their output never waits on a stdio buffer).
public enum StandardStreams {
    /// Writes `text` + newline to stdout (fd 1).
    public static func printLine(_ text: String) { write(text + "\n", to: 1) }

    /// Writes `text` + newline to stderr (fd 2).
    public static func printError(_ text: String) { write(text + "\n", to: 2) }

    /// Writes `text` to `fd`, retrying short writes and EINTR.
    public static func write(_ text: String, to fd: Int32) {
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            let n = bytes.withUnsafeBytes { b in valueOrErrno { Glibc.write(fd, b.baseAddress, b.count) } }
            guard case .success(let count) = n, count > 0 else { return }
            bytes = bytes.dropFirst(count)
        }
    }
}
