import Synchronization
import ShmSystem

/// Named rows of counters in shared memory that one process writes and any
/// other reads (Aeron's counters file, in small): the NATS bridge's
/// per-service statistics that `shm bridge --stats` and `shm service` show.
///
/// ```text
/// offset  size  field
/// 0       4     capacity   rows the table holds (1…1024)
/// 4       4     count      rows in use; released after a row's name is written
/// 8       8     tag        the writer's own word (the bridge: its origin id)
/// 16      48    reserved
/// 64      …     rows, `rowSize` bytes each:
///   +0    1     name length (1…63)
///   +1    63    name, UTF-8
///   +64   8×16  counters (relaxed stores: a reader may see one counter newer than another)
/// ```
///
/// Readers validate capacity, count and each name length before use: the
/// bytes come from another process.
package struct CountersTable: @unchecked Sendable {
    package enum Offset {
        package static let capacity = 0, count = 4, tag = 8, rows = 64
    }
    package enum RowOffset {
        package static let nameLength = 0, name = 1, counters = 64
    }
    package static let rowSize = 192, maxNameBytes = 63, countersPerRow = 16

    package static func size(capacity: Int) -> Int { Offset.rows + capacity * rowSize }

    let base: UnsafeMutableRawPointer
    let bytes: Int

    /// The table in `bytes` bytes at `base` (a mapping the caller keeps alive).
    package init(base: UnsafeMutableRawPointer, bytes: Int) {
        self.base = base
        self.bytes = bytes
    }

    /// Lays out an empty table (the writer, before anyone can open it).
    package static func initialize(_ base: UnsafeMutableRawPointer, capacity: Int, tag: UInt64) {
        base.storeBytes(of: UInt32(capacity), toByteOffset: Offset.capacity, as: UInt32.self)
        base.storeBytes(of: 0, toByteOffset: Offset.count, as: UInt32.self)
        base.storeBytes(of: tag, toByteOffset: Offset.tag, as: UInt64.self)
    }

    private var countWord: UnsafeMutablePointer<Atomic<UInt32>> { UnsafeMutablePointer(OpaquePointer(base + Offset.count)) }

    private func counterWord(row: Int, _ index: Int) -> UnsafeMutablePointer<Atomic<UInt64>> {
        UnsafeMutablePointer(OpaquePointer(base + Offset.rows + row * CountersTable.rowSize + RowOffset.counters + 8 * index))
    }

    package var tag: UInt64 { base.loadUnaligned(fromByteOffset: Offset.tag, as: UInt64.self) }

    // MARK: Writing (one process)

    /// Adds a row named `name` (truncated to 63 bytes) as row `index`, which
    /// must be the current count (rows are added in order, never removed).
    package func addRow(_ index: Int, name: String) {
        let row = base + Offset.rows + index * CountersTable.rowSize
        let utf8 = Array(name.utf8.prefix(CountersTable.maxNameBytes))
        row.storeBytes(of: UInt8(utf8.count), toByteOffset: RowOffset.nameLength, as: UInt8.self)
        utf8.withUnsafeBytes { (row + RowOffset.name).copyMemory(from: $0.baseAddress!, byteCount: utf8.count) }
        // SYNC POINT: release pairs with the readers' acquire load of the count in `rows()`.
        countWord.pointee.store(UInt32(index + 1), ordering: .releasing)
    }

    /// Sets counter `index` (< 16) of row `row`.
    package func store(_ value: UInt64, row: Int, counter index: Int) {
        // Relaxed: monitoring values; the row itself was published by `addRow`.
        counterWord(row: row, index).pointee.store(value, ordering: .relaxed)
    }

    // MARK: Reading (any process)

    /// Every complete row: its name and its first `counters` counters; empty
    /// if the header is not plausible.
    package func rows(counters: Int) -> [(name: String, counters: [UInt64])] {
        guard bytes >= Offset.rows else { return [] }
        let capacity = Int(base.loadUnaligned(fromByteOffset: Offset.capacity, as: UInt32.self))
        // SYNC POINT: acquire pairs with the writer's release store in `addRow`.
        let count = Int(countWord.pointee.load(ordering: .acquiring))
        guard (1...1024).contains(capacity), bytes >= CountersTable.size(capacity: capacity), count <= capacity else { return [] }
        let wanted = min(counters, CountersTable.countersPerRow)
        return (0..<count).compactMap { index in
            let row = base + Offset.rows + index * CountersTable.rowSize
            let length = Int(row.load(fromByteOffset: RowOffset.nameLength, as: UInt8.self))
            guard (1...CountersTable.maxNameBytes).contains(length) else { return nil }
            let name = String(decoding: UnsafeRawBufferPointer(start: row + RowOffset.name, count: length), as: UTF8.self)
            return (name, (0..<wanted).map { counterWord(row: index, $0).pointee.load(ordering: .relaxed) })
        }
    }
}
