import CShm

/// CRC32C (Castagnoli), the checksum of log records and persistent
/// headers: the SSE4.2 `crc32` instruction where the CPU has it, a table
/// otherwise (chosen once, in the C shim).
package enum CRC32C {
    /// Continues `crc` over `count` bytes at `bytes` (start with 0).
    @inlinable
    package static func update(_ crc: UInt32, _ bytes: UnsafeRawPointer?, count: Int) -> UInt32 {
        cshm_crc32c(crc, bytes, count)
    }

    /// CRC32C (from 0) of `prefix`'s 4 little-endian bytes, then `count`
    /// bytes at `bytes`: `update(update(0, prefix), bytes)` in one call.
    @inlinable
    package static func prefixed(_ prefix: UInt32, _ bytes: UnsafeRawPointer?, count: Int) -> UInt32 {
        cshm_crc32c_prefixed(prefix.littleEndian, bytes, count)
    }

    /// The table-driven path alone, for checking the hardware one.
    package static func softwareUpdate(_ crc: UInt32, _ bytes: UnsafeRawPointer?, count: Int) -> UInt32 {
        cshm_crc32c_software(crc, bytes, count)
    }
}
