import ShmSystem
import SystemPackage

/// What `Log.send(from:maxRecords:to:)` sent.
public struct SendResult: Sendable, Equatable {
    public var records: Int
    public var bytes: Int
    /// The sequence number to continue from.
    public var nextSequence: UInt64
}

extension Log {
    /// Streams records, starting with sequence `first`, to the descriptor
    /// `fd` (a socket, pipe or file) straight from the segment files with
    /// `sendfile(2)`: the kernel copies from the page cache, nothing passes
    /// through user space — as Kafka serves consumers. Records go out in
    /// their stored format (`RecordFormat`, skips included); `LogWireDecoder`
    /// reads them back. Stops after `maxRecords` records, at the end of what
    /// is committed, or at a damaged record.
    public func send(from first: UInt64, maxRecords: Int = .max, to fd: Int32) throws(LogError) -> SendResult {
        var position = try position(ofSequence: first)
        var result = SendResult(records: 0, bytes: 0, nextSequence: first)
        while result.records < maxRecords {
            let segment = try openSegment(position.segment, writable: false)
            let start = Int(position.offset)
            var end = start
            var rolled = false
            scan: while result.records < maxRecords {
                switch RecordWalker.step(segment, at: end) {
                case .record(_, let length, let sequence, _, let intact):
                    guard intact else { break scan }
                    end += RecordFormat.span(payload: length)
                    result.records += 1
                    result.nextSequence = sequence &+ 1
                case .skip(_, let span):
                    end += span
                case .endOfSegment:
                    rolled = true
                    break scan
                case .open, .garbage:
                    break scan
                }
            }
            if end > start {
                do { try FileTransfer.sendfile(path: segment.path, offset: start, count: end - start, to: fd) }
                catch { throw .system(operation: error.operation, path: segment.path, error.errno) }
            }
            result.bytes += end - start
            guard rolled, position.segment < UInt32.max - 1, segmentNumbers().contains(position.segment + 1) else { break }
            position = LogPosition(segment: position.segment + 1, offset: UInt32(dataOffset))
        }
        return result
    }
}

/// Reads records in the stored format from a byte stream (the receiving
/// end of `Log.send`), checking every checksum.
public struct LogWireDecoder: Sendable {
    var buffer: [UInt8] = []

    public init() {}

    /// Largest record the decoder accepts (a larger length is damage).
    public var maximumRecordBytes = 64 << 20

    /// Adds received bytes; returns the complete records they finish.
    /// A record that fails its checksum, or bytes that cannot start a
    /// record, throw `.corruptRecord`; the decoder drops the bad bytes (the
    /// record, or 8 bytes of garbage) and the records decoded before them
    /// come first in the next call's result (feed an empty collection to
    /// collect them).
    public mutating func feed(_ bytes: some Collection<UInt8>) throws(LogError) -> [LogRecord] {
        buffer.append(contentsOf: bytes)
        var records: [LogRecord] = []
        var consumed = 0
        var failure: LogError?
        buffer.withUnsafeBytes { raw in
            while failure == nil, raw.count - consumed >= 8 {
                let word = raw.loadUnaligned(fromByteOffset: consumed, as: UInt64.self)
                guard let (kind, length) = RecordFormat.decode(word), kind == .data || kind == .skip,
                      kind == .data ? length <= maximumRecordBytes : (length >= 8 && length % 8 == 0 && length <= maximumRecordBytes) else {
                    failure = .corruptRecord(position: LogPosition(segment: 0, offset: 0), sequence: nil, reason: "invalid word in stream")
                    consumed += 8
                    break
                }
                let span = kind == .data ? RecordFormat.span(payload: length) : length
                guard raw.count - consumed >= span else { break }
                if kind == .data {
                    let record = UnsafeMutableRawPointer.allocate(byteCount: span, alignment: 8)
                    defer { record.deallocate() }
                    record.copyMemory(from: raw.baseAddress! + consumed, byteCount: span)
                    let sequence = record.load(fromByteOffset: RecordFormat.Offset.sequence, as: UInt64.self)
                    guard RecordFormat.checksum(record: record, length: length)
                            == record.load(fromByteOffset: RecordFormat.Offset.checksum, as: UInt32.self) else {
                        failure = .corruptRecord(position: LogPosition(segment: 0, offset: 0), sequence: sequence, reason: "checksum mismatch in stream")
                        consumed += span
                        break
                    }
                    let payload = UnsafeRawBufferPointer(start: record + RecordFormat.headerSize, count: length)
                    records.append(LogRecord(sequence: sequence, position: LogPosition(segment: 0, offset: 0),
                                             timestamp: record.load(fromByteOffset: RecordFormat.Offset.timestamp, as: UInt64.self),
                                             bytes: Array(payload)))
                }
                consumed += span
            }
        }
        buffer.removeFirst(consumed)
        if let failure {
            pending = records
            throw failure
        }
        let earlier = pending
        pending = []
        return earlier + records
    }

    /// Records decoded before a failure, returned by the next call.
    var pending: [LogRecord] = []
}

extension Log {
    /// `send(from:maxRecords:to:)` to swift-system's `FileDescriptor`.
    public func send(from first: UInt64, maxRecords: Int = .max, to descriptor: FileDescriptor) throws(LogError) -> SendResult {
        try send(from: first, maxRecords: maxRecords, to: descriptor.rawValue)
    }
}
