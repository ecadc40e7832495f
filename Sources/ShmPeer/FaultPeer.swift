#if canImport(Glibc)
import Glibc
#endif
import Shm

/// Maps `path` with the library (which installs the SIGBUS guard), then
/// maps it again with a raw `mmap` the library knows nothing of, shrinks
/// the file and touches the raw mapping past the new end. With
/// `appHandler`, an application SIGBUS handler was installed before the
/// guard: the guard must hand the fault to it (it exits 42). Without, the
/// process must die of SIGBUS as it would without the library.
func sigbusOutsideGuardedMappings(_ path: String, appHandler: Bool) throws {
    if appHandler {
        signal(SIGBUS) { _ in _exit(42) }
    }
    let guarded = try MappedFile.create(path: path, size: 1 << 20)
    guarded.bytes[100] = 1
    let fd = open(path, O_RDWR)
    guard fd >= 0, let raw = mmap(nil, 1 << 20, PROT_READ, MAP_SHARED, fd, 0), raw != MAP_FAILED else {
        throw PayloadError("raw mmap failed")
    }
    guard ftruncate(fd, 4096) == 0 else { throw PayloadError("ftruncate failed") }
    print("touching")
    let value = raw.load(fromByteOffset: 512 * 1024, as: UInt8.self) // SIGBUS here
    print("survived \(value)")
    _ = withExtendedLifetime(guarded) { 0 }
}
