#if canImport(Glibc)
import Glibc
#endif

/// Removes a directory of plain files and the directory itself (`unlink`
/// each entry, then `rmdir`); what is missing is ignored. For scratch
/// directories of benchmarks and tests; not recursive.
package func removeDirectoryOfFiles(_ path: String) {
    if let dir = opendir(path) {
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { unlink(path + "/" + name) }
        }
        closedir(dir)
    }
    rmdir(path)
}
