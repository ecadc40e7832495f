import Shm
import ShmSystem
import Synchronization

/// What `shm cleanup` removes of dead bridges.
public enum BridgeCleanup {
    /// Removes the service-claim files of bridges that died; returns their names.
    public static func removeStaleClaims() -> [String] { ServiceClaims.removeStale() }
}

/// One bridge per machine per service. Two bridges that share a `/dev/shm`
/// (one machine, or containers sharing it) and both bridge a service would
/// pass its samples back and forth, or run a NATS request twice on the local
/// server. So a bridge takes a service on only while it holds the service's
/// claim: an exclusive `flock` on `/dev/shm/.swiftshm-bridge.<uid>.<service>`,
/// which the kernel drops when the bridge dies, however it dies; another
/// bridge then takes the service over at its next discovery.
final class ServiceClaims: @unchecked Sendable {
    private let held = Mutex<[String: FileLock]>([:])
    private let directory: String

    init(directory: String = "/dev/shm") { self.directory = directory }

    deinit {
        for lock in held.withLock({ Array($0.values) }) { lock.removeWhileHeld() }
    }

    /// Removes claim files no live bridge holds (bridges killed without
    /// removing theirs); returns their names. Safe against a bridge claiming
    /// at the same moment: a file is removed only while we hold its lock, and
    /// a claimer checks after locking that its file is still the named one.
    @discardableResult
    static func removeStale(directory: String = "/dev/shm") -> [String] {
        let prefix = ".swiftshm-bridge.\(ProcessIdentity.userID)."
        var removed: [String] = []
        for name in FileSystem.entries(in: directory) where name.hasPrefix(prefix) {
            guard let lock = try? FileLock(path: directory + "/" + name), (try? lock.tryLock(.exclusive)) == true,
                  lock.isCurrent else { continue }
            lock.removeWhileHeld()
            removed.append(name)
        }
        return removed
    }

    /// The claim file of `service`.
    func path(_ service: String) -> String { directory + "/.swiftshm-bridge.\(ProcessIdentity.userID).\(service)" }

    /// True if this bridge holds (or now takes) `service`'s claim; false if
    /// another live bridge on this machine holds it.
    func claim(_ service: String) -> Bool {
        held.withLock { held in
            if held[service] != nil { return true }
            for _ in 0..<3 {
                guard let lock = try? FileLock(path: path(service)) else { return false }
                guard (try? lock.tryLock(.exclusive)) == true else { return false }
                // The holder may have removed the file between our open and our lock.
                if lock.isCurrent {
                    held[service] = lock
                    return true
                }
            }
            return false
        }
    }
}
