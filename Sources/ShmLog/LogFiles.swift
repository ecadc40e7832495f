import Synchronization
import ShmSystem
import ShmPrimitives

/// `log.meta`: the log's configuration and the state appenders share.
///
/// ```text
/// offset  contents
///    0    magic UInt64 "SHMLOG01"
///    8    version UInt32 (2; version 1 files, without the checksum, are read)
///   16    segment size UInt64
///   24    index granularity UInt64
///   32    created UInt64 (wall ns)
///   40    checksum UInt64: FNV-1a of bytes 0..<40 (the contract's header
///         scheme: magic, version, fields, checksum — as `LayoutHeader`)
///  128    claim: (next position, next sequence) as one 16-byte word,
///         advanced with a double-width compare-and-swap by appenders
///  256    parker: tailers sleep here; appenders wake them after a commit
///  384    parking tailers: how many tailers may sleep (appenders publish
///         with a plain release store and skip the wake check while it is 0)
/// ```
final class MetaFile: @unchecked Sendable {
    static let magic: UInt64 = 0x3130_474F_4C4D_4853 // "SHMLOG01" little-endian
    static let version: UInt32 = 2
    /// Versions this build opens (1: before the header checksum).
    static let readableVersions: ClosedRange<UInt32> = 1...2
    static let size = 4096
    static let claimOffset = 128, parkerOffset = 256, parkingTailersOffset = 384
    /// The header fields (the table above).
    enum Offset {
        static let magic = 0, version = 8, segmentSize = 16, indexGranularity = 24, createdAt = 32, checksum = 40
    }

    let file: MappedFile
    let base: UnsafeMutableRawPointer
    let segmentSize: Int
    let indexGranularity: Int
    let createdAt: UInt64
    let claim: UnsafeMutablePointer<Atomic<WordPair>>
    let parker: Parker
    let parkingTailers: UnsafeMutablePointer<Atomic<UInt32>>

    static func create(path: String, segmentSize: Int, indexGranularity: Int) throws(LogError) -> MetaFile {
        // pid-lease: unique across pid namespaces (a bare pid is not).
        let directory = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
        let staged = StagedFile(path: path, temporaryPath: StagedFile.temporaryName(in: directory, prefix: creatingPrefix, suffix: ".meta"))
        let file: MappedFile
        do { file = try MappedFile.create(path: staged.temporaryPath, size: size, mode: 0o644, exclusive: false) }
        catch { throw .mapping(error) }
        let base = file.bytes.unsafeBaseAddress
        base.initializeMemory(as: UInt8.self, repeating: 0, count: size)
        base.storeBytes(of: magic, toByteOffset: Offset.magic, as: UInt64.self)
        base.storeBytes(of: version, toByteOffset: Offset.version, as: UInt32.self)
        base.storeBytes(of: UInt64(segmentSize), toByteOffset: Offset.segmentSize, as: UInt64.self)
        base.storeBytes(of: UInt64(indexGranularity), toByteOffset: Offset.indexGranularity, as: UInt64.self)
        base.storeBytes(of: wallClockNanoseconds(), toByteOffset: Offset.createdAt, as: UInt64.self)
        base.storeBytes(of: FNV1a.hash(base, count: Offset.checksum), toByteOffset: Offset.checksum, as: UInt64.self)
        let start = LogPosition(segment: 0, offset: UInt32(SegmentFile.dataOffset(segmentSize: segmentSize, granularity: indexGranularity)))
        // SYNC POINT: release pairs with the acquire in `loadClaim` (the file is renamed
        // into place only after this; msync orders nothing between processes).
        UnsafeMutablePointer<Atomic<WordPair>>(OpaquePointer(base + claimOffset))
            .pointee.store(WordPair(first: UInt(start.packed), second: 1), ordering: .releasing)
        do { try file.sync() } catch { throw .mapping(error) }
        // Appear complete or not at all.
        do { try staged.publish() } catch {
            if error == .exists { throw .alreadyExists(directory: path) }
            throw .system(operation: "rename", path: path, error)
        }
        return try MetaFile(path: path)
    }

    init(path: String) throws(LogError) {
        do { file = try MappedFile(path: path, access: .readWrite) }
        catch {
            if case .open(_, let e) = error, e == .notFound { throw .notFound(directory: path) }
            throw .mapping(error)
        }
        guard file.count >= MetaFile.size else { throw .invalidLayout(path: path, reason: "\(file.count) bytes, expected \(MetaFile.size)") }
        base = file.bytes.unsafeBaseAddress
        guard base.load(fromByteOffset: Offset.magic, as: UInt64.self) == MetaFile.magic else { throw .invalidLayout(path: path, reason: "not a swift-shm log (magic)") }
        let version = base.load(fromByteOffset: Offset.version, as: UInt32.self)
        guard MetaFile.readableVersions.contains(version) else {
            throw .invalidLayout(path: path, reason: "layout version \(version), this library reads \(MetaFile.readableVersions)")
        }
        if version >= 2, base.load(fromByteOffset: Offset.checksum, as: UInt64.self) != FNV1a.hash(base, count: Offset.checksum) {
            throw .invalidLayout(path: path, reason: "header checksum mismatch: the log's configuration was damaged")
        }
        // Never trust a value from the file: convert only what is in range.
        segmentSize = Int(exactly: base.load(fromByteOffset: Offset.segmentSize, as: UInt64.self)) ?? -1
        indexGranularity = Int(exactly: base.load(fromByteOffset: Offset.indexGranularity, as: UInt64.self)) ?? -1
        createdAt = base.load(fromByteOffset: Offset.createdAt, as: UInt64.self)
        guard LogConfig.segmentSizes.contains(segmentSize), segmentSize % 4096 == 0,
              LogConfig.granularities.contains(indexGranularity), indexGranularity & (indexGranularity - 1) == 0 else {
            throw .invalidLayout(path: path, reason: "segment size \(segmentSize) / index granularity \(indexGranularity) out of range")
        }
        claim = UnsafeMutablePointer(OpaquePointer(base + MetaFile.claimOffset))
        parker = Parker(base + MetaFile.parkerOffset)
        parkingTailers = UnsafeMutablePointer(OpaquePointer(base + MetaFile.parkingTailersOffset))
    }

    /// The claim word: where the next record goes and its sequence number.
    func loadClaim() -> (position: LogPosition, sequence: UInt64) {
        // SYNC POINT: acquire pairs with the appenders' CAS of the claim word.
        let pair = claim.pointee.load(ordering: .acquiring)
        return (LogPosition(packed: UInt64(pair.first)), UInt64(pair.second))
    }

    /// Only the position half of the claim word: a plain 8-byte atomic load.
    /// (A 16-byte atomic load is a locked CMPXCHG16B, which takes the line
    /// from the appenders; tailers poll this.)
    @inline(__always)
    func loadClaimPosition() -> LogPosition {
        // SYNC POINT: acquire pairs with the appenders' CAS of the claim word.
        LogPosition(packed: UnsafeMutablePointer<Atomic<UInt64>>(OpaquePointer(claim)).pointee.load(ordering: .acquiring))
    }

    func storeClaim(_ position: LogPosition, sequence: UInt64) {
        // SYNC POINT: release pairs with the acquire in `loadClaim` (recovery only, no live appender).
        claim.pointee.store(WordPair(first: UInt(position.packed), second: UInt(sequence)), ordering: .releasing)
    }
}

/// One segment file, mapped read-write (appenders, recovery) or read-only
/// (tailers).
///
/// ```text
/// offset      contents
///    0        magic UInt64 "SHMLOGSG"
///    8        version UInt32 (2; version 1 files, without the checksum, are read)
///   16        segment number UInt64
///   24        segment size UInt64
///   32        data offset UInt64
///   40        index entries UInt64
///   48        created UInt64 (wall ns)
///   56        cutTo UInt64: the size recovery found the file cut to (0: never cut)
///   64        cutFoundAt UInt64: when recovery found it (wall ns)
///   72        checksum UInt64: FNV-1a of bytes 0..<56 (the fields written once;
///             cutTo and cutFoundAt are written later by recovery)
///  128        sparse index: entry k (32 bytes) = the record whose span covers
///             byte k × granularity of the data area: +0 offset (written last,
///             release; 0 = unset), +8 sequence, +16 timestamp
///  dataOffset records, to the end of the file
/// ```
final class SegmentFile: @unchecked Sendable {
    static let magic: UInt64 = 0x4753_474F_4C4D_4853 // "SHMLOGSG"
    static let version: UInt32 = 2
    static let readableVersions: ClosedRange<UInt32> = 1...2
    static let headerSize = 128
    static let indexEntrySize = 32
    static let cutToOffset = 56, cutFoundAtOffset = 64
    /// The header fields (the table above).
    enum Offset {
        static let magic = 0, version = 8, number = 16, segmentSize = 24, dataOffset = 32, indexEntries = 40, createdAt = 48
        static let checksum = 72
        /// The checksum covers the header up to here.
        static let checksummed = 56
    }
    /// An index entry's fields.
    enum IndexOffset {
        static let offset = 0, sequence = 8, timestamp = 16
    }

    let path: String
    let number: UInt32
    let file: MappedFile
    let base: UnsafeMutableRawPointer
    let size: Int
    let dataOffset: Int
    let indexEntries: Int
    let granularity: Int
    let writable: Bool
    /// This open found the file cut short and extended it (recovery).
    private(set) var repairedCut = false

    static func indexEntries(segmentSize: Int, granularity: Int) -> Int { segmentSize / granularity }

    static func dataOffset(segmentSize: Int, granularity: Int) -> Int {
        let index = headerSize + indexEntries(segmentSize: segmentSize, granularity: granularity) * indexEntrySize
        return (index + 4095) & ~4095
    }

    static func name(_ number: UInt32) -> String {
        let digits = String(number)
        return String(repeating: "0", count: max(0, 10 - digits.count)) + digits + ".seg"
    }

    /// The segment number of a file name like `0000000042.seg`.
    static func number(fromName name: String) -> UInt32? {
        guard name.count == 14, name.hasSuffix(".seg") else { return nil }
        return UInt32(name.prefix(10))
    }

    /// Creates segment `number` in `directory` unless it exists, and maps it.
    /// Built under a temporary name and renamed into place without replacing,
    /// so a racing appender opens the winner's file.
    static func createOrOpen(directory: String, number: UInt32, meta: MetaFile, syncDirectory: Bool) throws(LogError) -> SegmentFile {
        // A temporary file can vanish under us (a recovery that took its
        // creator for dead): then try again, or open what another made.
        for _ in 0..<3 {
            do throws(LogError) {
                return try createOrOpenOnce(directory: directory, number: number, meta: meta, syncDirectory: syncDirectory)
            } catch .system(let operation, _, let e) where operation == "rename" && e == .notFound {
                continue
            }
        }
        return try createOrOpenOnce(directory: directory, number: number, meta: meta, syncDirectory: syncDirectory)
    }

    private static func createOrOpenOnce(directory: String, number: UInt32, meta: MetaFile, syncDirectory: Bool) throws(LogError) -> SegmentFile {
        let path = directory + "/" + name(number)
        if FileSystem.exists(path) { return try SegmentFile(path: path, number: number, meta: meta, writable: true) }
        let staged = StagedFile(path: path, temporaryPath: StagedFile.temporaryName(in: directory, prefix: creatingPrefix, suffix: ".seg"))
        let file: MappedFile
        do { file = try MappedFile.create(path: staged.temporaryPath, size: meta.segmentSize, mode: 0o644, exclusive: true) }
        catch {
            staged.discard() // e.g. no room for it: leave no half-made file behind
            throw .mapping(error)
        }
        let base = file.bytes.unsafeBaseAddress
        base.storeBytes(of: magic, toByteOffset: Offset.magic, as: UInt64.self)
        base.storeBytes(of: version, toByteOffset: Offset.version, as: UInt32.self)
        base.storeBytes(of: UInt64(number), toByteOffset: Offset.number, as: UInt64.self)
        base.storeBytes(of: UInt64(meta.segmentSize), toByteOffset: Offset.segmentSize, as: UInt64.self)
        base.storeBytes(of: UInt64(dataOffset(segmentSize: meta.segmentSize, granularity: meta.indexGranularity)),
                        toByteOffset: Offset.dataOffset, as: UInt64.self)
        base.storeBytes(of: UInt64(indexEntries(segmentSize: meta.segmentSize, granularity: meta.indexGranularity)),
                        toByteOffset: Offset.indexEntries, as: UInt64.self)
        base.storeBytes(of: wallClockNanoseconds(), toByteOffset: Offset.createdAt, as: UInt64.self)
        base.storeBytes(of: FNV1a.hash(base, count: Offset.checksummed), toByteOffset: Offset.checksum, as: UInt64.self)
        // The header reaches the disk before the name does: a segment whose
        // name survives power loss is never headerless.
        try? file.mapping.sync(.synchronous, range: 0..<4096)
        do {
            try staged.publish()
            if syncDirectory { FileSystem.syncDirectory(directory) }
        } catch {
            guard error == .exists else { throw .system(operation: "rename", path: path, error) }
        }
        return try SegmentFile(path: path, number: number, meta: meta, writable: true)
    }

    /// Opens segment `number`. A file shorter than the segment size is
    /// `.segmentShrunk`, unless `repairing` (recovery, with no appender
    /// alive): then it is extended with zeros and marked cut (`cutTo`),
    /// so `verify` keeps reporting the loss.
    init(path: String, number: UInt32, meta: MetaFile, writable: Bool, repairing: Bool = false) throws(LogError) {
        self.path = path
        self.number = number
        self.writable = writable
        var cutTo: Int?
        do {
            if let size = try? fileSize(path), size < meta.segmentSize {
                guard writable && repairing && size >= SegmentFile.headerSize else {
                    throw LogError.segmentShrunk(path: path, expectedBytes: meta.segmentSize, actualBytes: size)
                }
                _ = try MappedFile.create(path: path, size: meta.segmentSize)
                cutTo = size
            }
            file = try MappedFile(path: path, access: writable ? .readWrite : .readOnly)
        } catch let error as LogError {
            throw error
        } catch let error as MappingError {
            if case .open(_, let e) = error, e == .notFound { throw .notFound(directory: path) }
            throw .mapping(error)
        } catch {
            throw .invalidLayout(path: path, reason: "\(error)")
        }
        base = file.bytes.unsafeBaseAddress
        size = file.count
        granularity = meta.indexGranularity
        guard size >= SegmentFile.headerSize, base.load(fromByteOffset: Offset.magic, as: UInt64.self) == SegmentFile.magic else {
            throw .invalidLayout(path: path, reason: "not a swift-shm log segment (magic)")
        }
        let version = base.load(fromByteOffset: Offset.version, as: UInt32.self)
        guard SegmentFile.readableVersions.contains(version) else {
            throw .invalidLayout(path: path, reason: "segment layout version \(version), this library reads \(SegmentFile.readableVersions)")
        }
        if version >= 2, base.load(fromByteOffset: Offset.checksum, as: UInt64.self) != FNV1a.hash(base, count: Offset.checksummed) {
            throw .invalidLayout(path: path, reason: "segment header checksum mismatch: its header was damaged")
        }
        let expectedData = SegmentFile.dataOffset(segmentSize: meta.segmentSize, granularity: meta.indexGranularity)
        guard base.load(fromByteOffset: Offset.number, as: UInt64.self) == UInt64(number),
              base.load(fromByteOffset: Offset.segmentSize, as: UInt64.self) == UInt64(meta.segmentSize),
              base.load(fromByteOffset: Offset.dataOffset, as: UInt64.self) == UInt64(expectedData),
              size == meta.segmentSize else {
            throw .invalidLayout(path: path, reason: "header does not match the log (number \(number), size \(meta.segmentSize); file is \(size) bytes)")
        }
        dataOffset = expectedData
        indexEntries = SegmentFile.indexEntries(segmentSize: meta.segmentSize, granularity: meta.indexGranularity)
        repairedCut = cutTo != nil
        if let cutTo, base.load(fromByteOffset: SegmentFile.cutToOffset, as: UInt64.self) == 0 {
            base.storeBytes(of: UInt64(cutTo), toByteOffset: SegmentFile.cutToOffset, as: UInt64.self)
            base.storeBytes(of: wallClockNanoseconds(), toByteOffset: SegmentFile.cutFoundAtOffset, as: UInt64.self)
            try? file.mapping.sync(.synchronous, range: 0..<4096)
        }
    }

    /// The size recovery found this file cut to, if it ever was.
    var cutTo: Int? {
        let value = base.load(fromByteOffset: SegmentFile.cutToOffset, as: UInt64.self)
        return value == 0 ? nil : Int(clamping: value)
    }

    /// Throws if the file shrank under the mapping since it was opened
    /// (`fstat`, and the SIGBUS guard's count of zero-filled pages).
    func checkIntact() throws(LogError) {
        do { try file.checkIntact() } catch {
            if case .truncated(_, _, let size) = error {
                throw .segmentShrunk(path: path, expectedBytes: self.size, actualBytes: size)
            }
            throw .mapping(error)
        }
    }

    var createdAt: UInt64 { base.load(fromByteOffset: Offset.createdAt, as: UInt64.self) }

    // MARK: Records

    @inline(__always)
    func wordPointer(_ offset: Int) -> UnsafeMutablePointer<Atomic<UInt64>> { UnsafeMutablePointer(OpaquePointer(base + offset)) }

    /// The record word at `offset` (acquire: a "data" word makes the record visible).
    @inline(__always)
    func word(at offset: Int) -> UInt64 {
        // SYNC POINT: acquire pairs with the appender's release (seq_cst) store of the word in `commit`.
        wordPointer(offset).pointee.load(ordering: .acquiring)
    }

    /// The committed record at `offset`, checked: its bounds and checksum.
    func record(at offset: Int, length: Int) -> (sequence: UInt64, timestamp: UInt64, payload: UnsafeRawBufferPointer, intact: Bool) {
        let record = UnsafeRawPointer(base + offset)
        let crc = record.load(fromByteOffset: RecordFormat.Offset.checksum, as: UInt32.self)
        let intact = RecordFormat.checksum(record: record, length: length) == crc
        return (record.load(fromByteOffset: RecordFormat.Offset.sequence, as: UInt64.self),
                record.load(fromByteOffset: RecordFormat.Offset.timestamp, as: UInt64.self),
                UnsafeRawBufferPointer(start: record + RecordFormat.headerSize, count: length), intact)
    }

    /// True if a record of `length` payload bytes at `offset` fits in the file.
    @inline(__always)
    func fits(offset: Int, length: Int) -> Bool {
        offset >= dataOffset && offset % 8 == 0 && length <= size && offset + RecordFormat.span(payload: length) <= size
    }

    // MARK: Index

    func indexEntry(_ k: Int) -> (offset: Int, sequence: UInt64, timestamp: UInt64)? {
        guard k >= 0, k < indexEntries else { return nil }
        let entry = base + SegmentFile.headerSize + k * SegmentFile.indexEntrySize
        // SYNC POINT: acquire pairs with the release store of the entry's offset in `setIndexEntry`.
        let offset = Int(clamping: UnsafeMutablePointer<Atomic<UInt64>>(OpaquePointer(entry)).pointee.load(ordering: .acquiring))
        guard offset >= dataOffset, offset < size, offset % 8 == 0 else { return nil }
        return (offset, entry.load(fromByteOffset: IndexOffset.sequence, as: UInt64.self),
                entry.load(fromByteOffset: IndexOffset.timestamp, as: UInt64.self))
    }

    /// Entry `k`'s offset word as stored, unchecked (0: unset), for audits.
    func rawIndexOffset(_ k: Int) -> UInt64 {
        guard k >= 0, k < indexEntries else { return 0 }
        // SYNC POINT: acquire pairs with the release store of the entry's offset in `setIndexEntry`.
        return UnsafeMutablePointer<Atomic<UInt64>>(OpaquePointer(base + SegmentFile.headerSize + k * SegmentFile.indexEntrySize))
            .pointee.load(ordering: .acquiring)
    }

    /// The timestamp of the first record the index holds (the segment's
    /// first record, unless that was a skip), or nil if it holds none yet.
    var firstIndexedTimestamp: UInt64? {
        for k in 0..<indexEntries {
            if let entry = indexEntry(k) { return entry.timestamp }
        }
        return nil
    }

    func setIndexEntry(_ k: Int, offset: Int, sequence: UInt64, timestamp: UInt64) {
        guard k >= 0, k < indexEntries else { return }
        let entry = base + SegmentFile.headerSize + k * SegmentFile.indexEntrySize
        entry.storeBytes(of: sequence, toByteOffset: IndexOffset.sequence, as: UInt64.self)
        entry.storeBytes(of: timestamp, toByteOffset: IndexOffset.timestamp, as: UInt64.self)
        // SYNC POINT: release pairs with the acquire load in `indexEntry`.
        UnsafeMutablePointer<Atomic<UInt64>>(OpaquePointer(entry)).pointee.store(UInt64(offset), ordering: .releasing)
    }

    func clearIndex(from offset: Int) {
        for k in 0..<indexEntries {
            if let entry = indexEntry(k), entry.offset >= offset {
                // SYNC POINT: release pairs with the acquire load in `indexEntry` (recovery only).
                UnsafeMutablePointer<Atomic<UInt64>>(OpaquePointer(base + SegmentFile.headerSize + k * SegmentFile.indexEntrySize))
                    .pointee.store(0, ordering: .releasing)
            }
        }
    }

    /// Points the index entries whose boundary falls in this record at it.
    func indexRecord(offset: Int, span: Int, sequence: UInt64, timestamp: UInt64) {
        for k in indexSlots(offset: offset, span: span) { setIndexEntry(k, offset: offset, sequence: sequence, timestamp: timestamp) }
    }

    /// Index entries a record spanning `offset..<offset+span` owns: those whose
    /// boundary (k × granularity from the data start) falls inside it.
    @inline(__always)
    func indexSlots(offset: Int, span: Int) -> Range<Int> {
        let start = offset - dataOffset, end = start + span
        let first = (start + granularity - 1) / granularity
        let last = (end + granularity - 1) / granularity
        return first..<min(last, indexEntries)
    }

    /// `msync(MS_SYNC)` of the pages under `range` (byte offsets in the file).
    func sync(_ range: Range<Int>) throws(LogError) {
        do { try file.mapping.sync(.synchronous, range: range) } catch { throw .mapping(error) }
    }
}

func fileSize(_ path: String) throws(LogError) -> Int {
    do { return try FileSystem.size(of: path) } catch { throw .system(operation: "stat", path: path, error) }
}

/// Hidden names of metadata and segment files being made (`StagedFile`):
/// `.creating.<pid>-<lease>.<random>.meta|.seg`; recovery removes those
/// whose creator died.
let creatingPrefix = ".creating."
