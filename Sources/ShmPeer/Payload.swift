import Shm

/// The self-checking messages multi-process tests send: an 8-byte sequence
/// number followed by `seq % 200` filler bytes that are a function of the
/// sequence number, so the receiver checks every byte.
enum Payload {
    static func length(_ seq: UInt64) -> Int { 8 + Int(seq % 200) }

    static func fill(_ buffer: UnsafeMutableRawBufferPointer, seq: UInt64) {
        buffer.storeBytes(of: seq, as: UInt64.self)
        for i in 8..<length(seq) { buffer[i] = UInt8(truncatingIfNeeded: seq &* 31 &+ UInt64(i)) }
    }

    /// The sequence number if `bytes` is a valid message, else a description of what is wrong.
    static func check(_ bytes: UnsafeRawBufferPointer) -> Result<UInt64, PayloadError> {
        guard bytes.count >= 8 else { return .failure(PayloadError("message of \(bytes.count) bytes")) }
        let seq = bytes.loadUnaligned(as: UInt64.self)
        guard bytes.count == length(seq) else { return .failure(PayloadError("seq \(seq): length \(bytes.count), expected \(length(seq))")) }
        for i in 8..<bytes.count where bytes[i] != UInt8(truncatingIfNeeded: seq &* 31 &+ UInt64(i)) {
            return .failure(PayloadError("seq \(seq): byte \(i) corrupt"))
        }
        return .success(seq)
    }
}

struct PayloadError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
