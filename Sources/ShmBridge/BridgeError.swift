import Shm
import ShmLog

/// What can go wrong in the bridge: NATS itself, a local service, the
/// configuration, or a remote sample that does not fit the local service.
public enum BridgeError: Error, CustomStringConvertible, Sendable {
    /// A NATS call failed: the call, nats.c's status code and its text.
    case nats(operation: String, status: Int32, text: String)
    /// A local service could not be opened, created or used.
    case service(ServiceError)
    case invalidConfiguration(String)
    /// A log to mirror or replicate could not be read or written.
    case log(LogError)
    /// A remote sample's payload type is not the local service's.
    case typeMismatch(service: String, local: String, remote: String)

    public var description: String {
        switch self {
        case .nats(let operation, let status, let text): "NATS \(operation) failed: \(text) (status \(status))"
        case .service(let error): "\(error)"
        case .invalidConfiguration(let what): "invalid bridge configuration: \(what)"
        case .log(let error): "\(error)"
        case .typeMismatch(let service, let local, let remote):
            "service '\(service)': remote samples carry \(remote), the local service \(local)"
        }
    }
}
