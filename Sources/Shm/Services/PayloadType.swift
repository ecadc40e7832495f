import ShmSystem

/// What travels on a service: a fixed-size trivially copyable type, or byte
/// slices up to a maximum length. Two processes may talk only if they agree.
public struct PayloadType: Hashable, Sendable, CustomStringConvertible {
    /// The type's name (`String(reflecting:)`), in brackets for slices
    /// (`[Swift.UInt8]`).
    public let name: String
    /// Bytes of one value, or the maximum slice length.
    public let size: Int
    public let alignment: Int

    /// The payload type of `T` (its name, size and alignment).
    public static func of<T: BitwiseCopyable>(_ type: T.Type) -> PayloadType {
        PayloadType(name: String(reflecting: T.self), size: MemoryLayout<T>.size, alignment: MemoryLayout<T>.alignment)
    }

    /// The name of the payload type of byte slices (`slicesOf: UInt8.self`).
    public static let byteSliceName = "[Swift.UInt8]"

    public init(name: String, size: Int, alignment: Int) {
        self.name = name
        self.size = size
        self.alignment = alignment
    }

    public var description: String {
        name == Self.byteSliceName ? "bytes (up to \(size))" : "\(name) (\(size) bytes, alignment \(alignment))"
    }
}
