#if canImport(Glibc)
import Glibc
#endif
import CShm

/// A file built under a hidden temporary name and then renamed into place
/// without replacing anything (`renameat2(RENAME_NOREPLACE)`): others see
/// it complete or not at all, and of two racing creators exactly one wins.
///
/// ```swift
/// let staged = StagedFile(path: dir + "/log.meta", temporaryPath: StagedFile.temporaryName(in: dir, prefix: ".creating."))
/// // … create, fill and sync staged.temporaryPath …
/// try staged.publish()          // .exists: someone else's file is in place
/// ```
///
/// Used by the log's metadata and segment files and by process leases
/// (which lock the file before publishing it).
package struct StagedFile: Sendable {
    /// Where the file ends up.
    package let path: String
    /// Where it is built.
    package let temporaryPath: String

    package init(path: String, temporaryPath: String) {
        self.path = path
        self.temporaryPath = temporaryPath
    }

    /// `<directory>/<prefix><pid>-<lease>.<random><suffix>`: unique across
    /// pid namespaces (the lease token), and parseable by cleanups that
    /// remove the leftovers of dead creators (`creator(ofTemporaryName:prefix:)`).
    package static func temporaryName(in directory: String, prefix: String, suffix: String = "") -> String {
        directory + "/" + prefix + "\(ProcessIdentity.current.pid)-\(ProcessLease.hex(ProcessIdentity.current.lease))"
            + ".\(UInt32.random(in: 0...UInt32.max))" + suffix
    }

    /// The creator recorded in a name made by `temporaryName` (nil if the
    /// name is not one).
    package static func creator(ofTemporaryName name: String, prefix: String) -> ProcessIdentity? {
        guard name.hasPrefix(prefix) else { return nil }
        let fields = name.dropFirst(prefix.count).prefix { $0 != "." }.split(separator: "-")
        guard fields.count == 2, let pid = Int32(fields[0]), let lease = UInt32(fields[1], radix: 16) else { return nil }
        return ProcessIdentity(pid: pid, startTime: 0, lease: lease)
    }

    /// Renames the temporary file into place. On failure the temporary file
    /// is removed and the `Errno` thrown: `.exists` when a file is already
    /// at `path`, `.notFound` when the temporary file vanished (a cleanup
    /// took its creator for dead).
    package func publish() throws(Errno) {
        if case .failure(let e) = valueOrErrno({ cshm_rename_noreplace(temporaryPath, path) }) {
            discard()
            throw e
        }
    }

    /// Removes the temporary file (giving up).
    package func discard() { _ = unlink(temporaryPath) }
}
