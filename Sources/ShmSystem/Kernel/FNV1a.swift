/// FNV-1a, 64 bits: the checksum of every shared header (segment headers,
/// layout headers) and the hash of names stored in them (payload type
/// names). Not cryptographic: it catches damage and mismatches, not forgery.
package struct FNV1a: Sendable {
    package static let offsetBasis: UInt64 = 0xcbf2_9ce4_8422_2325
    package static let prime: UInt64 = 0x0000_0100_0000_01b3

    package var value: UInt64 = FNV1a.offsetBasis

    package init() {}

    @inlinable
    package mutating func add(_ byte: UInt8) { value = (value ^ UInt64(byte)) &* FNV1a.prime }

    /// FNV-1a of `count` bytes at `base`.
    package static func hash(_ base: UnsafeRawPointer, count: Int) -> UInt64 {
        var h = FNV1a()
        for i in 0..<count { h.add(base.load(fromByteOffset: i, as: UInt8.self)) }
        return h.value
    }

    /// FNV-1a of a string's UTF-8 bytes.
    package static func hash(_ text: String) -> UInt64 {
        var h = FNV1a()
        for byte in text.utf8 { h.add(byte) }
        return h.value
    }
}
