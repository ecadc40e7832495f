import Synchronization

/// The header at the start of every segment this library creates.
///
/// ```text
/// offset size  field
///    0     8   magic            "swiftshm" (0x6d68737466697773 little-endian)
///    8     4   layoutVersion    SegmentHeader.layoutVersion
///   12     4   headerSize       = dataOffset (one page, 4096)
///   16     4   state            atomic: 0 initializing, 1 ready, 2 retired
///   20     4   kind             SegmentKind four-character code
///   24     8   totalSize        header + data, bytes (= the object's size)
///   32     8   dataOffset       where the data area starts
///   40     8   dataSize         bytes usable by the application
///   48     4   creatorPID
///   52     4   creatorUID
///   56     8   creatorStartTime /proc/PID/stat starttime, clock ticks since boot
///   64     8   createdAt        CLOCK_REALTIME, nanoseconds since the epoch
///   72     4   kindVersion      version of the structure named by `kind`
///   76     4   flags            bit 0: owned by its creator (removed when the
///                                creator's handle goes; `shm cleanup` removes it
///                                if the creator died without doing so)
///   80     4   nameLength
///   84     4   creatorLease     the creator's lease token (ProcessLease), 0: none
///   88   128   name             UTF-8, zero-padded
///  216     8   checksum         FNV-1a 64 of bytes 0..<216 with `state` read as 0
///  224  3872   reserved, 0
/// ```
///
/// Everything except `state` is written once by the creator before `state`
/// becomes ready and never changes afterwards, so the checksum covers it. An
/// opener validates magic, version, sizes and checksum before trusting any of
/// it; any mismatch is a `SegmentError`, never a trap.
public enum SegmentHeader {
    public static let magic: UInt64 = 0x6d68_7374_6669_7773 // "swiftshm"
    /// The layout this build writes and reads.
    public static let layoutVersion: UInt32 = 1
    /// Size of the header; the data area starts here (one page, so data is page-aligned).
    public static let size = 4096
    static let nameCapacity = 128
    static let checksummedBytes = 216

    enum Offset {
        static let magic = 0, layoutVersion = 8, headerSize = 12, state = 16, kind = 20
        static let totalSize = 24, dataOffset = 32, dataSize = 40
        static let creatorPID = 48, creatorUID = 52, creatorStartTime = 56, createdAt = 64
        static let kindVersion = 72, flags = 76, nameLength = 80, creatorLease = 84, name = 88, checksum = 216
    }

    enum Flags {
        static let ownedByCreator: UInt32 = 1
    }

    /// Values of the `state` word.
    public enum State: UInt32, Sendable {
        case initializing = 0
        case ready = 1
        /// The creator unlinked the segment; existing mappings stay valid.
        case retired = 2
    }

    /// Writes every static field (state stays `initializing`). The memory
    /// must be zero-filled and not yet visible as ready to anyone.
    package static func initialize(
        at base: UnsafeMutableRawPointer, totalSize: Int, kind: SegmentKind, kindVersion: UInt32,
        name: String, creator: ProcessIdentity, creatorUID: UInt32, ownedByCreator: Bool = false
    ) {
        base.storeBytes(of: magic, toByteOffset: Offset.magic, as: UInt64.self)
        base.storeBytes(of: layoutVersion, toByteOffset: Offset.layoutVersion, as: UInt32.self)
        base.storeBytes(of: UInt32(size), toByteOffset: Offset.headerSize, as: UInt32.self)
        base.storeBytes(of: kind.rawValue, toByteOffset: Offset.kind, as: UInt32.self)
        base.storeBytes(of: UInt64(totalSize), toByteOffset: Offset.totalSize, as: UInt64.self)
        base.storeBytes(of: UInt64(size), toByteOffset: Offset.dataOffset, as: UInt64.self)
        base.storeBytes(of: UInt64(totalSize - size), toByteOffset: Offset.dataSize, as: UInt64.self)
        // The lease before the pid: an opener that finds a pid while the
        // header is being written tests the creator by its lease.
        base.storeBytes(of: creator.lease, toByteOffset: Offset.creatorLease, as: UInt32.self)
        base.storeBytes(of: creator.startTime, toByteOffset: Offset.creatorStartTime, as: UInt64.self)
        base.storeBytes(of: UInt32(bitPattern: creator.pid), toByteOffset: Offset.creatorPID, as: UInt32.self)
        base.storeBytes(of: creatorUID, toByteOffset: Offset.creatorUID, as: UInt32.self)
        base.storeBytes(of: wallClockNanoseconds(), toByteOffset: Offset.createdAt, as: UInt64.self)
        base.storeBytes(of: kindVersion, toByteOffset: Offset.kindVersion, as: UInt32.self)
        base.storeBytes(of: ownedByCreator ? Flags.ownedByCreator : 0, toByteOffset: Offset.flags, as: UInt32.self)
        let nameBytes = Array(name.utf8.prefix(nameCapacity))
        base.storeBytes(of: UInt32(nameBytes.count), toByteOffset: Offset.nameLength, as: UInt32.self)
        (base + Offset.name).copyMemory(from: nameBytes, byteCount: nameBytes.count)
        base.storeBytes(of: checksum(base), toByteOffset: Offset.checksum, as: UInt64.self)
    }

    static func stateWord(_ base: UnsafeMutableRawPointer) -> UnsafeMutablePointer<Atomic<UInt32>> {
        UnsafeMutablePointer<Atomic<UInt32>>(OpaquePointer(base + Offset.state))
    }

    /// Publishes the segment: every byte written before this is visible to
    /// an opener that sees `ready`.
    package static func publishReady(_ base: UnsafeMutableRawPointer) {
        // SYNC POINT: release pairs with the acquire load in `loadState`
        // (openers in other processes wait for `ready` before reading the
        // header or the data area).
        stateWord(base).pointee.store(State.ready.rawValue, ordering: .releasing)
    }

    /// Marks the segment retired (its creator unlinked it).
    package static func markRetired(_ base: UnsafeMutableRawPointer) {
        // SYNC POINT: release pairs with the acquire load in `loadState`.
        stateWord(base).pointee.store(State.retired.rawValue, ordering: .releasing)
    }

    /// The raw state word.
    package static func loadState(_ base: UnsafeRawPointer) -> UInt32 {
        // SYNC POINT: acquire pairs with the release stores in
        // `publishReady` / `markRetired`.
        stateWord(UnsafeMutableRawPointer(mutating: base)).pointee.load(ordering: .acquiring)
    }

    /// FNV-1a 64 over the static part of the header, `state` read as zero.
    static func checksum(_ base: UnsafeRawPointer) -> UInt64 {
        var hash = FNV1a()
        for i in 0..<checksummedBytes {
            hash.add((Offset.state..<Offset.state + 4).contains(i) ? 0 : base.load(fromByteOffset: i, as: UInt8.self))
        }
        return hash.value
    }

    /// What the header of a segment says, once validated.
    public struct Info: Sendable, Hashable {
        public let layoutVersion: UInt32
        public let kind: SegmentKind
        public let kindVersion: UInt32
        public let totalSize: Int
        public let dataOffset: Int
        public let dataSize: Int
        public let creator: ProcessIdentity
        public let creatorUID: UInt32
        /// Nanoseconds since the Unix epoch.
        public let createdAt: UInt64
        public let recordedName: String
        public let state: State
        /// The creator meant to remove the segment when done with it: if the
        /// creator is dead, the segment was abandoned.
        public let ownedByCreator: Bool
    }

    /// Validates the header at `base` of an object `objectSize` bytes long.
    /// Reads only the first `SegmentHeader.size` bytes (the caller must have
    /// at least that many mapped) and checks every field before returning it.
    ///
    /// - Throws: `.foreign` (bad magic), `.incompatibleVersion`,
    ///   `.corruptHeader` (checksum or inconsistent sizes), `.truncated`.
    package static func validate(_ base: UnsafeRawPointer, objectSize: Int, name: String) throws(SegmentError) -> Info {
        let foundMagic = base.load(fromByteOffset: Offset.magic, as: UInt64.self)
        guard foundMagic == magic else {
            throw .foreign(name: name, reason: "no swift-shm header (magic 0x\(String(foundMagic, radix: 16)))")
        }
        let version = base.load(fromByteOffset: Offset.layoutVersion, as: UInt32.self)
        guard version == layoutVersion else {
            throw .incompatibleVersion(name: name, found: version, supported: layoutVersion)
        }
        let stored = base.load(fromByteOffset: Offset.checksum, as: UInt64.self)
        guard stored == checksum(base) else {
            throw .corruptHeader(name: name, reason: "header checksum mismatch")
        }
        let headerSize = Int(base.load(fromByteOffset: Offset.headerSize, as: UInt32.self))
        let total = base.load(fromByteOffset: Offset.totalSize, as: UInt64.self)
        let dataOffset = base.load(fromByteOffset: Offset.dataOffset, as: UInt64.self)
        let dataSize = base.load(fromByteOffset: Offset.dataSize, as: UInt64.self)
        guard headerSize == size, dataOffset == UInt64(size) else {
            throw .corruptHeader(name: name, reason: "header size \(headerSize), data offset \(dataOffset); expected \(size)")
        }
        guard total <= UInt64(Int.max), dataSize <= total, dataOffset + dataSize == total else {
            throw .corruptHeader(name: name, reason: "sizes disagree: total \(total), data \(dataOffset)+\(dataSize)")
        }
        guard Int(total) <= objectSize else {
            throw .truncated(name: name, actualSize: objectSize, expectedSize: Int(total))
        }
        let nameLength = min(Int(base.load(fromByteOffset: Offset.nameLength, as: UInt32.self)), nameCapacity)
        let recordedName = String(decoding: UnsafeRawBufferPointer(start: base + Offset.name, count: nameLength), as: UTF8.self)
        let rawState = loadState(base)
        guard let state = State(rawValue: rawState) else {
            throw .corruptHeader(name: name, reason: "unknown state \(rawState)")
        }
        return Info(
            layoutVersion: version,
            kind: SegmentKind(rawValue: base.load(fromByteOffset: Offset.kind, as: UInt32.self)),
            kindVersion: base.load(fromByteOffset: Offset.kindVersion, as: UInt32.self),
            totalSize: Int(total), dataOffset: Int(dataOffset), dataSize: Int(dataSize),
            creator: ProcessIdentity(
                pid: Int32(bitPattern: base.load(fromByteOffset: Offset.creatorPID, as: UInt32.self)),
                startTime: base.load(fromByteOffset: Offset.creatorStartTime, as: UInt64.self),
                lease: base.load(fromByteOffset: Offset.creatorLease, as: UInt32.self)),
            creatorUID: base.load(fromByteOffset: Offset.creatorUID, as: UInt32.self),
            createdAt: base.load(fromByteOffset: Offset.createdAt, as: UInt64.self),
            recordedName: recordedName, state: state,
            ownedByCreator: base.load(fromByteOffset: Offset.flags, as: UInt32.self) & Flags.ownedByCreator != 0)
    }

    /// Waits (bounded) until the header at `base` is published, validating it.
    /// An all-zero header is a creator still initializing; if its creator is
    /// dead the segment was abandoned.
    package static func waitUntilReady(_ base: UnsafeRawPointer, objectSize: Int, name: String, timeoutNanoseconds: UInt64) throws(SegmentError) -> Info {
        let deadline = monotonicNanoseconds() &+ timeoutNanoseconds
        var pause: UInt64 = 10_000
        while true {
            let state = loadState(base)
            if state != State.initializing.rawValue {
                return try validate(base, objectSize: objectSize, name: name)
            }
            let magicSoFar = base.load(fromByteOffset: Offset.magic, as: UInt64.self)
            if magicSoFar != 0 && magicSoFar != magic {
                throw .foreign(name: name, reason: "no swift-shm header (magic 0x\(String(magicSoFar, radix: 16)))")
            }
            let pid = Int32(bitPattern: base.load(fromByteOffset: Offset.creatorPID, as: UInt32.self))
            if pid > 0 {
                let creator = ProcessIdentity(pid: pid, startTime: base.load(fromByteOffset: Offset.creatorStartTime, as: UInt64.self),
                                              lease: base.load(fromByteOffset: Offset.creatorLease, as: UInt32.self))
                if !creator.isAlive { throw .abandoned(name: name, creatorPID: pid) }
            }
            if monotonicNanoseconds() >= deadline {
                if magicSoFar == 0 && pid == 0 {
                    throw .foreign(name: name, reason: "the header is all zeros")
                }
                throw .notReady(name: name, waited: .nanoseconds(Int64(clamping: timeoutNanoseconds)))
            }
            sleepNanoseconds(pause)
            pause = min(pause * 2, 5_000_000)
        }
    }
}
