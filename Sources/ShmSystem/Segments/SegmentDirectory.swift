#if canImport(Glibc)
import Glibc
#endif

/// One entry of `SegmentDirectory.list()`: a segment this library created
/// (or something squatting on one of its names), as `shm ls` shows it.
public struct SegmentListing: Sendable {
    public let name: SegmentName
    /// Size of the object in `/dev/shm`.
    public let size: Int
    public let mode: FileMode
    public let ownerUID: uid_t
    /// The validated header, or nil if it could not be read.
    public let info: SegmentHeader.Info?
    /// Why the header could not be read (foreign, corrupt, no permission…).
    public let problem: SegmentError?

    /// Whether the creating process still runs.
    public var creatorLiveness: ProcessIdentity.Liveness? { info?.creator.liveness }
}

/// A creation that never finished: its creator died between `shm_open` of
/// the hidden temporary name and moving it into place.
public struct StaleCreation: Sendable {
    public let fileName: String
    public let creatorPID: Int32
    public let size: Int
}

/// Enumerates `/dev/shm` for segments made by this library.
public enum SegmentDirectory {
    /// Segments of user `uid` (default: the caller), or of every user when
    /// `allUsers` is set, sorted by name. Each is opened read-only just long
    /// enough to validate its header.
    public static func list(uid: uid_t = getuid(), allUsers: Bool = false) -> [SegmentListing] {
        var result: [SegmentListing] = []
        for fileName in entries() {
            guard let name = SegmentName.parse(fileName: fileName), allUsers || name.uid == uid else { continue }
            if let listing = inspect(name) { result.append(listing) }
        }
        return result.sorted { ($0.name.uid, $0.name.name) < ($1.name.uid, $1.name.name) }
    }

    /// Reads what `shm stat` shows for one name; nil if it does not exist.
    public static func inspect(_ name: SegmentName) -> SegmentListing? {
        var st = stat()
        guard stat(SharedMemorySegment.directory + "/" + name.fileName, &st) == 0 else { return nil }
        var info: SegmentHeader.Info?
        var problem: SegmentError?
        do {
            let segment = try SharedMemorySegment.open(name, access: .readOnly, timeout: .milliseconds(50))
            info = segment.info
        } catch {
            problem = error
        }
        return SegmentListing(name: name, size: Int(st.st_size), mode: st.st_mode & 0o7777, ownerUID: st.st_uid,
                              info: info, problem: problem)
    }

    /// Hidden temporary objects whose creating process is dead.
    public static func staleCreations(uid: uid_t = getuid()) -> [StaleCreation] {
        var result: [StaleCreation] = []
        let prefix = SharedMemorySegment.temporaryPrefix + "\(uid)."
        for fileName in entries() where fileName.hasPrefix(prefix) {
            let parts = fileName.dropFirst(prefix.count).split(separator: ".", maxSplits: 2)
            guard parts.count == 3 else { continue }
            let creator = parts[0].split(separator: "-")
            guard let pid = Int32(creator[0]) else { continue }
            let lease = creator.count == 2 ? UInt32(creator[1], radix: 16) ?? 0 : 0
            if ProcessIdentity(pid: pid, startTime: 0, lease: lease).isAlive { continue }
            var st = stat()
            guard stat(SharedMemorySegment.directory + "/" + fileName, &st) == 0 else { continue }
            result.append(StaleCreation(fileName: fileName, creatorPID: pid, size: Int(st.st_size)))
        }
        return result
    }

    /// Removes a stale temporary object (`shm_unlink`).
    public static func remove(_ stale: StaleCreation) throws(SegmentError) {
        if case .failure(let e) = valueOrErrno({ shm_unlink("/" + stale.fileName) }) {
            throw .system(operation: "shm_unlink", name: stale.fileName, e)
        }
    }

    /// File names in `/dev/shm` (`opendir`/`readdir`).
    package static func entries() -> [String] { names(in: SharedMemorySegment.directory) }

    /// Names in the directory at `path` (`opendir`/`readdir`), without "." and "..".
    package static func names(in path: String) -> [String] { FileSystem.entries(in: path) }
}
