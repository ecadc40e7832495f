#if canImport(Glibc)
import Glibc
#endif

/// A validated segment name, namespaced per user.
///
/// Users give short names such as `camera.frames`; the object in `/dev/shm`
/// is called `swiftshm.<uid>.camera.frames`, so two users on one machine never
/// collide and `shm ls` can find exactly what this library created.
///
/// A name is 1…100 characters from `A–Z a–z 0–9 . _ -`, does not start with
/// `.` or `-`, and contains no `..`.
public struct SegmentName: Hashable, Sendable, CustomStringConvertible {
    /// The name the user chose.
    public let name: String
    /// The user the name is namespaced under.
    public let uid: UInt32

    /// The longest name accepted (the namespaced form stays far below NAME_MAX).
    public static let maximumLength = 100
    /// Prefix of every object this library creates in `/dev/shm`.
    public static let prefix = "swiftshm."

    /// Validates `name` for the current user (or `uid`).
    public init(_ name: String, uid: UInt32 = getuid()) throws(SegmentError) {
        if let reason = SegmentName.problem(with: name) {
            throw .invalidName(name, reason: reason)
        }
        self.name = name
        self.uid = uid
    }

    /// Why `name` is not a valid segment name, or nil when it is.
    public static func problem(with name: String) -> String? {
        if name.isEmpty { return "the name is empty" }
        let bytes = Array(name.utf8)
        if bytes.count > maximumLength {
            return "the name is \(bytes.count) bytes long; at most \(maximumLength) are allowed"
        }
        if bytes.contains(UInt8(ascii: "/")) { return "the name contains '/'; give a plain name such as 'camera.frames'" }
        for byte in bytes where !isAllowed(byte) {
            let shown = byte < 0x20 || byte >= 0x7f ? "byte 0x\(String(byte, radix: 16))" : "'\(Character(Unicode.Scalar(byte)))'"
            return "the name contains \(shown); use letters, digits, '.', '_' and '-'"
        }
        if bytes.first == UInt8(ascii: ".") || bytes.first == UInt8(ascii: "-") {
            return "the name starts with '\(Character(Unicode.Scalar(bytes[0])))'"
        }
        // Over the bytes: String.contains(String) went through the string-processing
        // searcher (~18,000 instructions per name, on every open and listing).
        if zip(bytes, bytes.dropFirst()).contains(where: { $0 == UInt8(ascii: ".") && $1 == UInt8(ascii: ".") }) {
            return "the name contains '..'"
        }
        return nil
    }

    private static func isAllowed(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"):
            return true
        default:
            return false
        }
    }

    /// The file name in `/dev/shm`: `swiftshm.<uid>.<name>`.
    public var fileName: String { "\(SegmentName.prefix)\(uid).\(name)" }

    /// The name passed to `shm_open(3)`: `/swiftshm.<uid>.<name>`.
    public var posixName: String { "/" + fileName }

    public var description: String { name }

    /// Recovers a name from a `/dev/shm` file name made by this library, or nil.
    public static func parse(fileName: String) -> SegmentName? {
        guard fileName.hasPrefix(prefix) else { return nil }
        let rest = fileName.dropFirst(prefix.count)
        guard let dot = rest.firstIndex(of: "."), let uid = UInt32(rest[..<dot]) else { return nil }
        let name = String(rest[rest.index(after: dot)...])
        return try? SegmentName(name, uid: uid)
    }
}
