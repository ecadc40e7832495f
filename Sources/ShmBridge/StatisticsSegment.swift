import Shm
import ShmSystem
import Synchronization

/// A bridge's counters in shared memory, so that `shm service` and
/// `shm bridge --stats` (other processes) can show them. One segment per
/// running bridge, `bridge.<name>.<pid hex>`, kind "BRST", removed with
/// the bridge (a killed bridge's shows as dead and `shm cleanup` takes it).
///
/// ```text
/// data area (after the segment header)
/// offset  size  field
/// 0       4     capacity   entries the segment holds (1…1024)
/// 4       4     count      entries in use; SYNC POINT: released after an entry's name is written
/// 8       8     origin     the bridge's origin id (Shm-Origin)
/// 16      48    reserved
/// 64      …     entries, `entrySize` bytes each:
///   +0    1     name length (1…63)
///   +1    63    the service (or "log:<stream>") name, UTF-8
///   +64   8×11  counters, in `counterNames` order (relaxed stores: a reader may see
///               one counter newer than another)
/// ```
///
/// Readers validate capacity, count and each name length before use: the
/// bytes come from another process.
public enum StatisticsSegment {
    public static let kind = SegmentKind("BRST")
    static let capacityOffset = 0, countOffset = 4, originOffset = 8, entriesOffset = 64
    static let entrySize = 192, nameLengthOffset = 0, nameOffset = 1, maxNameBytes = 63, countersOffset = 64
    static let capacity = 256
    public static let counterNames = ["out", "out_bytes", "in", "in_bytes", "send_failures", "type_mismatches", "malformed",
                                      "incomplete", "duplicates", "local_drops", "loops_skipped"]

    static func size(capacity: Int) -> Int { entriesOffset + capacity * entrySize }

    /// The segment name of the bridge `name` in process `pid`.
    static func segmentName(bridge name: String, pid: Int32) -> String {
        let safe = String(name.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" ? $0 : "_" }.prefix(40))
        return "bridge.\(safe).\(String(pid, radix: 16))"
    }

    /// One bridge's counters as another process reads them.
    public struct Report: Sendable {
        public let segment: String
        public let creator: ProcessIdentity?
        public let origin: UInt64
        public let services: [(name: String, counters: [(String, UInt64)])]
    }

    /// Every running (or dead, not yet cleaned up) bridge's counters.
    public static func reports() -> [Report] {
        SegmentDirectory.list().filter { $0.name.name.hasPrefix("bridge.") }.compactMap { listing in
            guard let segment = try? SharedMemorySegment.open(listing.name, access: .readOnly, kind: kind, timeout: .milliseconds(100)),
                  segment.data.count >= entriesOffset else { return nil }
            let base = UnsafeRawPointer(segment.data.unsafeBaseAddress)
            let size = segment.data.count
            let capacity = Int(base.loadUnaligned(fromByteOffset: capacityOffset, as: UInt32.self))
            // SYNC POINT: acquire pairs with the writer's release store of the count.
            let count = Int(UnsafePointer<Atomic<UInt32>>(OpaquePointer(base + countOffset)).pointee.load(ordering: .acquiring))
            guard (1...1024).contains(capacity), size >= StatisticsSegment.size(capacity: capacity), count <= capacity else { return nil }
            var services: [(String, [(String, UInt64)])] = []
            for index in 0..<count {
                let entry = base + entriesOffset + index * entrySize
                let length = Int(entry.load(fromByteOffset: nameLengthOffset, as: UInt8.self))
                guard (1...maxNameBytes).contains(length) else { continue }
                let name = String(decoding: UnsafeRawBufferPointer(start: entry + nameOffset, count: length), as: UTF8.self)
                let counters = counterNames.enumerated().map { i, key in
                    (key, UnsafePointer<Atomic<UInt64>>(OpaquePointer(entry + countersOffset + 8 * i)).pointee.load(ordering: .relaxed))
                }
                services.append((name, counters))
            }
            return Report(segment: listing.name.name, creator: listing.info?.creator,
                          origin: base.loadUnaligned(fromByteOffset: originOffset, as: UInt64.self), services: services)
        }
    }
}

/// The writing side, owned by a running bridge.
final class StatisticsPublisher {
    let segment: SharedMemorySegment
    let base: UnsafeMutableRawPointer
    var slots: [String: Int] = [:]

    init(bridge name: String, origin: UInt64) throws(BridgeError) {
        do {
            segment = try SharedMemorySegment.create(
                SegmentName(StatisticsSegment.segmentName(bridge: name, pid: ProcessIdentity.current.pid)),
                size: StatisticsSegment.size(capacity: StatisticsSegment.capacity), kind: StatisticsSegment.kind,
                lifetime: .removedWithCreator) { data in
                    let base = data.unsafeBaseAddress
                    base.storeBytes(of: UInt32(StatisticsSegment.capacity), toByteOffset: StatisticsSegment.capacityOffset, as: UInt32.self)
                    base.storeBytes(of: origin, toByteOffset: StatisticsSegment.originOffset, as: UInt64.self)
                }
        } catch {
            throw .invalidConfiguration("the statistics segment: \(error)")
        }
        base = segment.data.unsafeBaseAddress
    }

    /// Copies the counters into the segment (new services get a slot).
    func publish(_ statistics: [ServiceStatistics]) {
        for service in statistics {
            let slot: Int
            if let known = slots[service.service] {
                slot = known
            } else {
                guard slots.count < StatisticsSegment.capacity else { continue }
                slot = slots.count
                let entry = base + StatisticsSegment.entriesOffset + slot * StatisticsSegment.entrySize
                let name = Array(service.service.utf8.prefix(StatisticsSegment.maxNameBytes))
                entry.storeBytes(of: UInt8(name.count), toByteOffset: StatisticsSegment.nameLengthOffset, as: UInt8.self)
                name.withUnsafeBytes { (entry + StatisticsSegment.nameOffset).copyMemory(from: $0.baseAddress!, byteCount: name.count) }
                slots[service.service] = slot
                // SYNC POINT: release pairs with the readers' acquire load of the count.
                UnsafeMutablePointer<Atomic<UInt32>>(OpaquePointer(base + StatisticsSegment.countOffset)).pointee
                    .store(UInt32(slots.count), ordering: .releasing)
            }
            let entry = base + StatisticsSegment.entriesOffset + slot * StatisticsSegment.entrySize
            for (i, (_, value)) in service.counts.enumerated() where i < StatisticsSegment.counterNames.count {
                UnsafeMutablePointer<Atomic<UInt64>>(OpaquePointer(entry + StatisticsSegment.countersOffset + 8 * i)).pointee
                    .store(value, ordering: .relaxed)
            }
        }
    }
}
