import Shm
import ShmSystem

/// Finds local services the bridge should take on: those of one messaging
/// pattern whose names a rule wants and that are not handled yet; a service
/// that failed to open is tried again after `retryAfter`. The sample
/// exporter, the event bridge and the request bridge each keep one.
struct ServiceDiscovery {
    let pattern: MessagingPattern
    /// What the bridge does with such services, for log lines ("export", "import").
    let action: String
    var retryAfter: UInt64 = 5_000_000_000
    /// Services that could not be opened, and when we tried (monotonic ns).
    private var failed: [String: UInt64] = [:]

    init(_ pattern: MessagingPattern, action: String) {
        self.pattern = pattern
        self.action = action
    }

    /// What `take` did with a service.
    enum Outcome { case taken, refused, deferred }

    /// Calls `take` for each service of `pattern` that `wants` and that is
    /// not `handled` (and did not fail within `retryAfter`); logs failures
    /// through `log`. A service `take` refuses is never offered again; one it
    /// defers (another bridge holds it) is offered again after `retryAfter`.
    mutating func discover(wants: (String) -> Bool, handled: (String) -> Bool, log: (String) -> Void,
                           take: (String) throws(ServiceError) -> Outcome) {
        for name in ServiceDirectory.serviceNames() where !handled(name) && wants(name) {
            if let at = failed[name], monotonicNanoseconds() &- at < retryAfter { continue }
            do throws(ServiceError) {
                guard try ServiceDirectory.pattern(of: name) == pattern else { continue }
                switch try take(name) {
                case .taken: failed[name] = nil
                case .refused: failed[name] = UInt64.max / 2
                case .deferred: failed[name] = monotonicNanoseconds() // looked at again after `retryAfter`
                }
            } catch {
                failed[name] = monotonicNanoseconds()
                log("\(action) of \(pattern) service '\(name)' failed: \(error)")
            }
        }
    }
}
