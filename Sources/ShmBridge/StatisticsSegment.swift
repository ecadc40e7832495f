import Shm
import ShmSystem

/// A bridge's counters in shared memory, so that `shm service` and
/// `shm bridge --stats` (other processes) can show them. One segment per
/// running bridge, `bridge.<name>.<pid hex>`, kind "BRST", removed with
/// the bridge (a killed bridge's shows as dead and `shm cleanup` takes it).
/// Its data area is a `CountersTable` (layout drawn there): one row per
/// service (or "log:<stream>"), the counters in `counterNames` order, the
/// table's tag the bridge's origin id (Shm-Origin).
public enum StatisticsSegment {
    public static let kind = SegmentKind("BRST")
    static let capacity = 256
    public static let counterNames = ["out", "out_bytes", "in", "in_bytes", "send_failures", "type_mismatches", "malformed",
                                      "incomplete", "duplicates", "local_drops", "loops_skipped"]

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
                  segment.data.count >= CountersTable.Offset.rows else { return nil }
            let table = CountersTable(base: segment.data.unsafeBaseAddress, bytes: segment.data.count)
            let (rows, origin) = withExtendedLifetime(segment) { (table.rows(counters: counterNames.count), table.tag) }
            return Report(segment: listing.name.name, creator: listing.info?.creator, origin: origin,
                          services: rows.map { row in (row.name, Array(zip(counterNames, row.counters))) })
        }
    }
}

/// The writing side, owned by a running bridge.
final class StatisticsPublisher {
    let segment: SharedMemorySegment
    let table: CountersTable
    var slots: [String: Int] = [:]

    init(bridge name: String, origin: UInt64) throws(BridgeError) {
        do {
            segment = try SharedMemorySegment.create(
                SegmentName(StatisticsSegment.segmentName(bridge: name, pid: ProcessIdentity.current.pid)),
                size: CountersTable.size(capacity: StatisticsSegment.capacity), kind: StatisticsSegment.kind,
                lifetime: .removedWithCreator) { data in
                    CountersTable.initialize(data.unsafeBaseAddress, capacity: StatisticsSegment.capacity, tag: origin)
                }
        } catch {
            throw .invalidConfiguration("the statistics segment: \(error)")
        }
        table = CountersTable(base: segment.data.unsafeBaseAddress, bytes: segment.data.count)
    }

    /// Copies the counters into the segment (new services get a row).
    func publish(_ statistics: [ServiceStatistics]) {
        for service in statistics {
            let row: Int
            if let known = slots[service.service] {
                row = known
            } else {
                guard slots.count < StatisticsSegment.capacity else { continue }
                row = slots.count
                table.addRow(row, name: service.service)
                slots[service.service] = row
            }
            for (i, (_, value)) in service.counts.enumerated() where i < StatisticsSegment.counterNames.count {
                table.store(value, row: row, counter: i)
            }
        }
    }
}
