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

    /// The table-driven path alone, for checking the hardware one.
    package static func softwareUpdate(_ crc: UInt32, _ bytes: UnsafeRawPointer?, count: Int) -> UInt32 {
        cshm_crc32c_software(crc, bytes, count)
    }
}
