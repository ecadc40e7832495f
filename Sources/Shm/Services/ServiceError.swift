import ShmSystem
@_spi(ShmInternals) import ShmPrimitives

/// Why an operation on a node, service or port failed.
public enum ServiceError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The service or node name is not usable.
    case invalidName(String, reason: String)
    /// A configuration value is out of range.
    case invalidConfiguration(String)
    /// The service exists with a configuration or payload type that differs
    /// from what the caller asked for; `differences` names each one.
    case incompatible(service: String, differences: [String])
    /// No service with this name exists (and the caller did not ask to create it).
    case notFound(service: String)
    /// The service already exists (and the caller asked to create it).
    case alreadyExists(service: String)
    /// Every publisher (or subscriber, client, server, listener…) slot is taken by a live process.
    case tooManyPorts(service: String, kind: String, maximum: Int)
    /// All of the publisher's samples are loaned out or held by subscribers
    /// (a growing pool: its live segments already hold the most chunks the
    /// service's limits allow, some of them retired but still held, or it
    /// has made its 255 segments).
    case poolExhausted(service: String, chunks: Int)
    /// The publisher already has its maximum of samples loaned and not sent.
    case tooManyLoans(maximum: Int)
    /// The payload does not fit the sample.
    case payloadTooLarge(size: Int, maximum: Int)
    /// A subscriber holds as many samples as it may.
    case tooManyBorrowed(maximum: Int)
    /// Nothing happened within the timeout.
    case timedOut(Duration)
    /// A request found no server to take it: none connected within `waited`
    /// (nil: none was there and the send did not wait).
    case noServer(service: String, waited: Duration?)
    /// A peer's shared structure is damaged or was written by a foreign program.
    case corrupt(service: String, reason: String)
    /// A segment operation failed.
    case segment(SegmentError)
    /// A queue operation failed.
    case queue(QueueError)

    public var description: String {
        switch self {
        case .invalidName(let name, let reason): "invalid name '\(name)': \(reason)"
        case .invalidConfiguration(let reason): "invalid service configuration: \(reason)"
        case .incompatible(let service, let differences):
            "service '\(service)' exists with a different configuration: " + differences.joined(separator: "; ")
        case .notFound(let service): "no service named '\(service)' (see `shm ls`)"
        case .alreadyExists(let service): "service '\(service)' already exists"
        case .tooManyPorts(let service, let kind, let maximum):
            "service '\(service)' already has its maximum of \(maximum) live \(kind)s"
        case .poolExhausted(let service, let chunks):
            "service '\(service)': all \(chunks) samples of this publisher are loaned or held by subscribers"
        case .tooManyLoans(let maximum): "the publisher already has its maximum of \(maximum) samples loaned; send or drop some"
        case .payloadTooLarge(let size, let maximum): "payload of \(size) bytes exceeds the maximum of \(maximum)"
        case .tooManyBorrowed(let maximum): "the subscriber already holds its maximum of \(maximum) samples; release some"
        case .timedOut(let timeout): "timed out after \(timeout.timeoutDescription)"
        case .noServer(let service, let waited):
            "no server of '\(service)' took the request\(waited.map { " within \($0.timeoutDescription)" } ?? "") (see `shm service \(service)`)"
        case .corrupt(let service, let reason): "service '\(service)': \(reason)"
        case .segment(let error): error.description
        case .queue(let error): error.description
        }
    }
}

extension ServiceError {
    /// `.timedOut` after a wait of `timeout` (nil: none was given).
    static func timedOut(after timeout: Duration?) -> ServiceError { .timedOut(timeout ?? .zero) }
}

/// Runs `body`, turning segment and queue errors into `ServiceError`.
func serviceCall<T>(_ body: () throws -> T) throws(ServiceError) -> T {
    do {
        return try body()
    } catch let error as ServiceError {
        throw error
    } catch let error as SegmentError {
        throw .segment(error)
    } catch let error as QueueError {
        throw .queue(error)
    } catch {
        throw .corrupt(service: "?", reason: "\(error)")
    }
}
