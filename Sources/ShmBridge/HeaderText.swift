/// Header values read and written as bytes, for the per-sample path.
///
/// `String.split` walks grapheme clusters: splitting one `Shm-Type` header
/// cost ~130,000 instructions and one `Shm-Sample` ~28,000 (callgrind,
/// `shm bench bridge`), more than nats.c's whole publish. Header values on
/// the wire are ASCII; these scan and format their UTF-8 bytes directly.
enum HeaderText {
    /// Splits `bytes` at `separator` one field at a time.
    struct Scanner {
        let bytes: UnsafeBufferPointer<UInt8>
        private(set) var position = 0
        /// The fields handed out so far.
        private(set) var fields = 0

        init(_ bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

        var isAtEnd: Bool { position > bytes.count }

        /// The next field (possibly empty), or nil after the last one.
        mutating func next(_ separator: UInt8) -> UnsafeBufferPointer<UInt8>? {
            guard position <= bytes.count else { return nil }
            var end = position
            while end < bytes.count, bytes[end] != separator { end += 1 }
            let field = UnsafeBufferPointer(rebasing: bytes[position..<end])
            position = end + 1
            fields += 1
            return field
        }

        /// Everything not handed out yet (separators included), or nil after the last field.
        mutating func rest() -> UnsafeBufferPointer<UInt8>? {
            guard position <= bytes.count else { return nil }
            let field = UnsafeBufferPointer(rebasing: bytes[position...])
            position = bytes.count + 1
            fields += 1
            return field
        }
    }

    /// Digits only (no sign, no spaces), at most `UInt64.max`; nil otherwise.
    static func decimal(_ field: UnsafeBufferPointer<UInt8>) -> UInt64? {
        guard !field.isEmpty, field.count <= 20 else { return nil }
        var value: UInt64 = 0
        for byte in field {
            guard byte >= 0x30, byte <= 0x39 else { return nil }
            let (times10, o1) = value.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times10.addingReportingOverflow(UInt64(byte - 0x30))
            guard !o1, !o2 else { return nil }
            value = sum
        }
        return value
    }

    /// Hexadecimal digits (either case), at most 16 of them; nil otherwise.
    static func hex(_ field: UnsafeBufferPointer<UInt8>) -> UInt64? {
        guard !field.isEmpty, field.count <= 16 else { return nil }
        var value: UInt64 = 0
        for byte in field {
            let digit: UInt8
            switch byte {
            case 0x30...0x39: digit = byte - 0x30
            case 0x61...0x66: digit = byte - 0x61 + 10
            case 0x41...0x46: digit = byte - 0x41 + 10
            default: return nil
            }
            value = value << 4 | UInt64(digit)
        }
        return value
    }

    /// A header value built in a fixed buffer (no allocation), ending in a NUL.
    struct Writer {
        static let capacity = 160
        private var storage: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
                              UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        private(set) var count = 0

        init() {}

        private mutating func append(_ byte: UInt8) {
            precondition(count < Self.capacity - 1, "header value longer than \(Self.capacity - 1) bytes")
            withUnsafeMutableBytes(of: &storage) { $0[count] = byte }
            count += 1
        }

        mutating func separator(_ byte: UInt8 = UInt8(ascii: ";")) { append(byte) }

        mutating func decimal(_ value: UInt64) { digits(value, radix: 10) }

        mutating func hex(_ value: UInt64) { digits(value, radix: 16) }

        private mutating func digits(_ value: UInt64, radix: UInt64) {
            var reversed: (UInt64, UInt64, UInt64) = (0, 0, 0) // 20 digits at most
            var length = 0, rest = value
            withUnsafeMutableBytes(of: &reversed) { scratch in
                repeat {
                    let digit = UInt8(truncatingIfNeeded: rest % radix)
                    scratch[length] = digit < 10 ? 0x30 + digit : 0x61 + digit - 10
                    length += 1
                    rest /= radix
                } while rest > 0
            }
            withUnsafeBytes(of: reversed) { scratch in
                for index in stride(from: length - 1, through: 0, by: -1) { append(scratch[index]) }
            }
        }

        /// The value as a NUL-terminated C string, valid inside `body`.
        mutating func withCString<R>(_ body: (UnsafePointer<CChar>) throws(BridgeError) -> R) throws(BridgeError) -> R {
            let length = count
            return try withUnsafeMutableBytes(of: &storage) { raw in
                raw[length] = 0
                return Result { () throws(BridgeError) -> R in
                    try body(raw.baseAddress!.assumingMemoryBound(to: CChar.self))
                }
            }.get()
        }

        /// The value as a String (tests, logs).
        var text: String {
            withUnsafeBytes(of: storage) { String(decoding: $0.prefix(count), as: UTF8.self) }
        }
    }
}

extension HeaderText {
    /// Whether `field` holds exactly the bytes of `text`.
    static func equals(_ field: UnsafeBufferPointer<UInt8>, _ text: StaticString) -> Bool {
        field.count == text.utf8CodeUnitCount
            && field.elementsEqual(UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    /// Whether `field` holds exactly `bytes`.
    static func equals(_ field: UnsafeBufferPointer<UInt8>, _ bytes: [UInt8]) -> Bool {
        field.count == bytes.count && bytes.withUnsafeBufferPointer { field.elementsEqual($0) }
    }

    /// The bytes of a NUL-terminated C string (header values are short).
    static func bytes(_ text: UnsafePointer<CChar>) -> UnsafeBufferPointer<UInt8> {
        let start = UnsafeRawPointer(text).assumingMemoryBound(to: UInt8.self)
        var count = 0
        while start[count] != 0 { count += 1 }
        return UnsafeBufferPointer(start: start, count: count)
    }
}
