#if canImport(Glibc)
import Glibc
#endif

/// Removes a directory of plain files and the directory itself (`unlink`
/// each entry, then `rmdir`); what is missing is ignored. For scratch
/// directories of benchmarks and tests; not recursive.
package func removeDirectoryOfFiles(_ path: String) {
    for name in FileSystem.entries(in: path) { FileSystem.removeIfPresent(path + "/" + name) }
    rmdir(path)
}
