import ShmSystem

/// The header every structure in this module writes at the start of its
/// region: magic, version, its configuration as 64-bit fields, and a
/// checksum over all of it. Written once before the structure is used;
/// attaching validates every part before trusting any field.
///
/// ```text
/// offset 0   magic     UInt32 (four ASCII characters)
/// offset 4   version   UInt32
/// offset 8   fields    UInt64 × n (structure-specific configuration)
/// offset 8+8n checksum UInt64, FNV-1a of bytes 0..<8+8n
/// ```
package enum LayoutHeader {
    /// Byte offsets of the header (the table above); fields follow at 8.
    package enum Offset {
        package static let magic = 0, version = 4, fields = 8
        /// Field `i`.
        package static func field(_ i: Int) -> Int { fields + 8 * i }
        /// The checksum after `count` fields (it covers bytes 0..<this).
        package static func checksum(afterFields count: Int) -> Int { fields + 8 * count }
    }
    package static func size(fields: Int) -> Int { Offset.checksum(afterFields: fields) + 8 }

    package static func write(_ base: UnsafeMutableRawPointer, magic: SegmentKind, version: UInt32, fields: [UInt64]) {
        base.storeBytes(of: magic.rawValue, toByteOffset: Offset.magic, as: UInt32.self)
        base.storeBytes(of: version, toByteOffset: Offset.version, as: UInt32.self)
        for (i, field) in fields.enumerated() { base.storeBytes(of: field, toByteOffset: Offset.field(i), as: UInt64.self) }
        let end = Offset.checksum(afterFields: fields.count)
        base.storeBytes(of: checksum(base, bytes: end), toByteOffset: end, as: UInt64.self)
    }

    /// Reads `count` fields after checking magic, version and checksum.
    package static func read(_ region: MappedBytes, magic: SegmentKind, version: UInt32, count: Int,
                             what: String) throws(QueueError) -> [UInt64] {
        guard region.count >= size(fields: count) else {
            throw .regionTooSmall(needed: size(fields: count), available: region.count)
        }
        let base = region.unsafeBaseAddress
        let foundMagic = base.load(fromByteOffset: Offset.magic, as: UInt32.self)
        guard foundMagic == magic.rawValue else {
            throw .invalidLayout("expected a \(what) (magic \(magic)), found magic \(SegmentKind(rawValue: foundMagic))")
        }
        let foundVersion = base.load(fromByteOffset: Offset.version, as: UInt32.self)
        guard foundVersion == version else {
            throw .invalidLayout("\(what) layout version \(foundVersion); this build supports \(version)")
        }
        let end = Offset.checksum(afterFields: count)
        let stored = base.load(fromByteOffset: end, as: UInt64.self)
        guard stored == checksum(base, bytes: end) else {
            throw .invalidLayout("\(what) header checksum mismatch")
        }
        return (0..<count).map { base.load(fromByteOffset: Offset.field($0), as: UInt64.self) }
    }

    static func checksum(_ base: UnsafeRawPointer, bytes: Int) -> UInt64 {
        FNV1a.hash(base, count: bytes)
    }
}

/// A role slot: one 64-bit word holding the packed `ProcessIdentity` of the
/// process that holds a role (0: nobody). Claimed with a CAS; a slot whose
/// holder is dead is taken over.
package struct RoleSlot: @unchecked Sendable {
    let word: UnsafeMutablePointer<Atomic<UInt64>>

    package init(_ address: UnsafeMutableRawPointer) { word = UnsafeMutablePointer(OpaquePointer(address)) }

    /// Claims the slot for the calling process, taking it over from a dead holder.
    package func claim(role: String) throws(QueueError) {
        let me = ProcessIdentity.current.packed
        // SYNC POINT: acquire (and the acquire-release CAS below) pair with the
        // previous holder's release CAS in `release`: what it did in the role is visible.
        var current = word.pointee.load(ordering: .acquiring)
        for _ in 0..<64 {
            if current != 0 && current != me {
                let holder = ProcessIdentity(packed: current)
                if holder.isAlive { throw .roleTaken(role: role, pid: holder.pid) }
            }
            let (done, original) = word.pointee.compareExchange(expected: current, desired: me, ordering: .acquiringAndReleasing)
            if done { return }
            current = original
        }
        throw .roleTaken(role: role, pid: ProcessIdentity(packed: current).pid)
    }

    /// Gives the slot up if this process still holds it.
    package func release() {
        // SYNC POINT: release pairs with the next holder's acquire in `claim`.
        _ = word.pointee.compareExchange(expected: ProcessIdentity.current.packed, desired: 0, ordering: .releasing)
    }

    /// Who holds the role now, if anyone.
    package var holder: ProcessIdentity? {
        // SYNC POINT: acquire pairs with the CAS in `claim` (diagnostics).
        let value = word.pointee.load(ordering: .acquiring)
        return value == 0 ? nil : ProcessIdentity(packed: value)
    }
}

import Synchronization
