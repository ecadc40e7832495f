import CShm
import CSwiftShm
import Shm
import ShmLog

// The C ABI's conventions (swiftshm.h): an Int32 status per call, the
// message of the last failure per thread, opaque handles that retain a
// Swift object. Nothing here traps on bad input from C.

/// Records `message` as this thread's last error and returns `status`.
func failure(_ status: Int32, _ message: String) -> Int32 {
    message.withCString { cshm_set_last_error($0) }
    return status
}

/// Runs `body`, turning any error into its status code and message.
func cabi(_ body: () throws -> Int32) -> Int32 {
    do { return try body() } catch {
        return failure(status(of: error), "\(error)")
    }
}

func status(of error: any Error) -> Int32 {
    switch error {
    case let error as ServiceError: status(of: error)
    case let error as SegmentError: status(of: error)
    case let error as LogError: status(of: error)
    case let error as MappingError: status(of: error)
    case is CABIError: (error as! CABIError).status
    default: SHM_E_SYSTEM
    }
}

func status(of error: ServiceError) -> Int32 {
    switch error {
    case .invalidName, .invalidConfiguration, .payloadTooLarge: SHM_E_INVALID_ARGUMENT
    case .incompatible: SHM_E_INCOMPATIBLE
    case .notFound: SHM_E_NOT_FOUND
    case .alreadyExists: SHM_E_EXISTS
    case .tooManyPorts, .poolExhausted, .tooManyLoans, .tooManyBorrowed: SHM_E_EXHAUSTED
    case .timedOut, .noServer: SHM_E_TIMED_OUT
    case .corrupt, .queue: SHM_E_CORRUPT
    case .segment(let error): status(of: error)
    }
}

func status(of error: SegmentError) -> Int32 {
    switch error {
    case .invalidName, .invalidSize: SHM_E_INVALID_ARGUMENT
    case .alreadyExists: SHM_E_EXISTS
    case .notFound: SHM_E_NOT_FOUND
    case .insufficientSpace: SHM_E_NO_SPACE
    case .truncated: SHM_E_TRUNCATED
    case .foreign, .corruptHeader, .abandoned: SHM_E_CORRUPT
    case .incompatibleVersion, .kindMismatch: SHM_E_INCOMPATIBLE
    case .notReady: SHM_E_TIMED_OUT
    default: SHM_E_SYSTEM
    }
}

func status(of error: LogError) -> Int32 {
    switch error {
    case .notFound: SHM_E_NOT_FOUND
    case .alreadyExists: SHM_E_EXISTS
    case .invalidLayout, .corruptRecord: SHM_E_CORRUPT
    case .invalidConfiguration, .recordTooLarge: SHM_E_INVALID_ARGUMENT
    case .timedOut: SHM_E_TIMED_OUT
    case .segmentShrunk: SHM_E_TRUNCATED
    case .replicaOutOfOrder, .appendersBusy: SHM_E_STATE
    case .mapping(let error): status(of: error)
    default: SHM_E_SYSTEM
    }
}

func status(of error: MappingError) -> Int32 {
    switch error {
    case .truncated: SHM_E_TRUNCATED
    case .invalidRange, .emptyFile, .beyondEndOfFile, .readOnly: SHM_E_INVALID_ARGUMENT
    default: SHM_E_SYSTEM
    }
}

/// An error of the C ABI itself (a NULL argument, a used-up handle).
struct CABIError: Error, CustomStringConvertible {
    let status: Int32
    let description: String
    static func invalid(_ what: String) -> CABIError { CABIError(status: SHM_E_INVALID_ARGUMENT, description: what) }
    static func state(_ what: String) -> CABIError { CABIError(status: SHM_E_STATE, description: what) }
    static func corrupt(_ what: String) -> CABIError { CABIError(status: SHM_E_CORRUPT, description: what) }
}

// MARK: Handles

/// What a handle retains: one Swift object or value (ports and services;
/// samples, loans and records have classes of their own).
final class Box<Value> {
    let value: Value
    init(_ value: Value) { self.value = value }
}

/// A Swift object handed to C as an opaque pointer (retained until freed).
func handle(_ object: AnyObject) -> OpaquePointer { OpaquePointer(Unmanaged.passRetained(object).toOpaque()) }

/// The object behind a handle, or `.invalid` for NULL.
func object<T: AnyObject>(_ pointer: OpaquePointer?, _ type: T.Type, _ what: String) throws -> T {
    guard let pointer else { throw CABIError.invalid("\(what) is NULL") }
    return Unmanaged<T>.fromOpaque(UnsafeRawPointer(pointer)).takeUnretainedValue()
}

/// Releases a handle (NULL is ignored).
func release<T: AnyObject>(_ pointer: OpaquePointer?, _ type: T.Type) {
    guard let pointer else { return }
    Unmanaged<T>.fromOpaque(UnsafeRawPointer(pointer)).release()
}

/// Stores `value` through an out-pointer, or fails for NULL.
func store<T>(_ value: T, _ out: UnsafeMutablePointer<T>?, _ what: String) throws {
    guard let out else { throw CABIError.invalid("\(what) is NULL") }
    out.pointee = value
}

func string(_ text: UnsafePointer<CChar>?, _ what: String) throws -> String {
    guard let text else { throw CABIError.invalid("\(what) is NULL") }
    return String(cString: text)
}

/// A C open mode (SHM_OPEN_*).
func openMode(_ value: UInt32) throws -> OpenMode {
    switch value {
    case UInt32(SHM_OPEN_OR_CREATE): .openOrCreate
    case UInt32(SHM_OPEN): .open
    case UInt32(SHM_CREATE): .create
    default: throw CABIError.invalid("open_mode \(value)")
    }
}

/// A C timeout in nanoseconds: < 0 for ever (nil), else a duration.
func timeout(_ nanoseconds: Int64) -> Duration? { nanoseconds < 0 ? nil : .nanoseconds(nanoseconds) }

@_cdecl("shm_abi_version")
public func shm_abi_version() -> UInt32 { UInt32(SHM_ABI_VERSION_MAJOR) << 16 | UInt32(SHM_ABI_VERSION_MINOR) }

@_cdecl("shm_last_error")
public func shm_last_error() -> UnsafePointer<CChar>? { cshm_last_error() }
