import ShmSystem


/// The on-disk record format, shared by appenders, tailers, recovery,
/// `verify` and the sendfile wire format (records go out as they are stored).
///
/// ```text
/// offset  size  field
///    0     8    word: kind (bits 60–63) | length (bits 0–31); bits 32–59 zero.
///               Written last, with one release store: a reader that sees
///               kind "data" sees the whole record.
///    8     4    CRC32C of (length as 4 little-endian bytes, bytes 16..<32+length)
///   12     4    appender: ProcessIdentity.compact — its lease token, or its
///               pid with bit 29 set (set when the space is claimed)
///   16     8    sequence number (global, contiguous, from 1)
///   24     8    timestamp, wall-clock nanoseconds since 1970
///   32     n    payload
/// ```
/// Records start 8-byte aligned and take `align8(32 + n)` bytes.
public enum RecordFormat {
    /// The fields' offsets from the start of a record (the table above).
    public enum Offset {
        public static let word = 0, checksum = 8, appender = 12, sequence = 16, timestamp = 24, payload = 32
    }
    public static let headerSize = Offset.payload
    /// The record's first word (kind and length), the one a walker reads to
    /// decide what is at an offset — also an end-of-segment marker's size.
    public static let wordSize = Offset.checksum - Offset.word
    /// Records start on 8-byte boundaries: a walker that lost its place
    /// looks for the next record one slot on.
    public static let slotAlignment = 8
    static let kindShift: UInt64 = 60
    static let lengthMask: UInt64 = 0xFFFF_FFFF

    /// What the first word of a record slot says.
    public enum Kind: UInt64, Sendable {
        /// Nothing written yet.
        case empty = 0
        /// Claimed by an appender that has not committed (length = span).
        case writing = 1
        /// A committed record (length = payload bytes).
        case data = 2
        /// Space to step over: an abandoned claim or a hole closed by
        /// recovery (length = span).
        case skip = 3
        /// The rest of the segment is unused; continue in the next one.
        case end = 4
    }

    @inline(__always)
    static func word(_ kind: Kind, length: Int) -> UInt64 { kind.rawValue << kindShift | UInt64(length) }

    /// Decodes a record word; nil if it cannot be one (stray bits, unknown kind).
    @inline(__always)
    static func decode(_ word: UInt64) -> (kind: Kind, length: Int)? {
        guard word & 0x0FFF_FFFF_0000_0000 == 0, let kind = Kind(rawValue: word >> kindShift) else { return nil }
        return (kind, Int(word & lengthMask))
    }

    /// Bytes a record with `payload` bytes occupies.
    @inline(__always)
    public static func span(payload: Int) -> Int { (headerSize + payload + slotAlignment - 1) & ~(slotAlignment - 1) }

    /// `span(payload:)` with wrapping arithmetic, for a length already
    /// checked to be in `0...segmentSize` (the append path).
    @inline(__always)
    static func span(checkedPayload payload: Int) -> Int { (headerSize &+ payload &+ slotAlignment &- 1) & ~(slotAlignment &- 1) }

    /// The checksum of a record whose header starts at `record`.
    static func checksum(record: UnsafeRawPointer, length: Int) -> UInt32 {
        // CRC32C of the length (4 bytes, little-endian), then the header from
        // the sequence number on and the payload — in one call.
        CRC32C.prefixed(UInt32(truncatingIfNeeded: length), record + Offset.sequence, count: headerSize - Offset.sequence + length)
    }

    /// CRC32C of `bytes` (exposed for tests and tools).
    public static func crc32c(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        CRC32C.update(crc, bytes.baseAddress, count: bytes.count)
    }
}
