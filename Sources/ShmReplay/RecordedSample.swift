import Shm

/// How a recorded sample sits in a log record (little-endian).
///
/// ```text
/// offset  size  field
/// 0       4     kind        1 sample, 2 descriptor (the service's payload type)
/// 4       4     reserved    0
/// 8       8     publisher   the sample's publisher port id
/// 16      8     sequence    its number from that publisher (1, 2, …)
/// 24      n     payload     the sample's bytes; for a descriptor, UTF-8 "<size>;<alignment>;<type name>"
/// ```
///
/// Records are read from files another process wrote: every field is
/// checked before use (`RecordedSample.init?(_:)`).
public enum RecordedSampleFormat {
    public static let kindOffset = 0, reservedOffset = 4, publisherOffset = 8, sequenceOffset = 16, payloadOffset = 24
    static let sampleKind: UInt32 = 1, descriptorKind: UInt32 = 2

    static func descriptor(_ type: PayloadType) -> String { "\(type.size);\(type.alignment);\(type.name)" }

    static func decodeDescriptor(_ bytes: UnsafeRawBufferPointer) -> PayloadType? {
        let text = String(decoding: bytes, as: UTF8.self)
        let fields = text.split(separator: ";", maxSplits: 2, omittingEmptySubsequences: false)
        guard fields.count == 3, let size = Int(fields[0]), let alignment = Int(fields[1]), size >= 1, size <= Int(UInt32.max),
              alignment >= 1, alignment <= 4096, !fields[2].isEmpty else { return nil }
        return PayloadType(name: String(fields[2]), size: size, alignment: alignment)
    }
}

/// One record of a recording, decoded.
package enum RecordedEntry {
    case sample(publisher: UInt64, sequence: UInt64, payload: UnsafeRawBufferPointer)
    case descriptor(PayloadType)

    /// Nil for a record too short, of an unknown kind, or a malformed descriptor.
    package init?(_ record: UnsafeRawBufferPointer) {
        guard record.count >= RecordedSampleFormat.payloadOffset else { return nil }
        let kind = record.loadUnaligned(fromByteOffset: RecordedSampleFormat.kindOffset, as: UInt32.self).littleEndian
        let payload = UnsafeRawBufferPointer(rebasing: record[RecordedSampleFormat.payloadOffset...])
        switch kind {
        case RecordedSampleFormat.sampleKind:
            self = .sample(publisher: record.loadUnaligned(fromByteOffset: RecordedSampleFormat.publisherOffset, as: UInt64.self).littleEndian,
                           sequence: record.loadUnaligned(fromByteOffset: RecordedSampleFormat.sequenceOffset, as: UInt64.self).littleEndian,
                           payload: payload)
        case RecordedSampleFormat.descriptorKind:
            guard let type = RecordedSampleFormat.decodeDescriptor(payload) else { return nil }
            self = .descriptor(type)
        default:
            return nil
        }
    }
}
