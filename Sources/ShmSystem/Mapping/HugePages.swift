#if canImport(Glibc)
import Glibc
#endif

/// Whether and how to back memory with huge pages.
///
/// | policy | what happens |
/// | --- | --- |
/// | `.none` | normal pages |
/// | `.transparent` | normal mapping + `madvise(MADV_HUGEPAGE)`; the kernel uses 2 MiB pages where it can (best effort, never an error) |
/// | `.preferred` | `MAP_HUGETLB` / `MFD_HUGETLB` if reserved huge pages are free, else falls back to `.transparent` |
/// | `.required` | `MAP_HUGETLB` / `MFD_HUGETLB`, or `MappingError.hugePagesUnavailable` explaining why |
///
/// Reserved huge pages (hugetlbfs) need `vm.nr_hugepages` > 0; transparent
/// huge pages need `/sys/kernel/mm/transparent_hugepage/enabled` (anonymous
/// memory) or `shmem_enabled` (shared memory) set to `madvise` or `always`.
/// `HugePageSupport.current` reports all of it; `shm stat` shows what a
/// mapping got.
public enum HugePagePolicy: Sendable, Hashable {
    case none
    case transparent
    case preferred
    case required
}

/// What backs a mapping.
public enum PageBacking: Sendable, Hashable, CustomStringConvertible {
    case normal
    /// Asked for transparent huge pages; the kernel promotes when it can.
    case transparentHugePages
    /// Reserved huge pages of this size.
    case hugeTLB(pageSize: Int)

    public var description: String {
        switch self {
        case .normal: "normal pages"
        case .transparentHugePages: "transparent huge pages (madvise)"
        case .hugeTLB(let size): "reserved huge pages (\(ByteCount.format(size)))"
        }
    }
}

/// The machine's huge-page configuration, read from `/proc/meminfo` and
/// `/sys/kernel/mm/transparent_hugepage/`.
public struct HugePageSupport: Sendable, CustomStringConvertible {
    /// `HugePages_Total`: reserved huge pages.
    public let reservedTotal: Int
    /// `HugePages_Free`.
    public let reservedFree: Int
    /// `Hugepagesize` in bytes.
    public let hugePageSize: Int
    /// THP mode for anonymous memory (`always`, `madvise` or `never`).
    public let transparentMode: String
    /// THP mode for shared memory (tmpfs, memfd, System V).
    public let transparentShmemMode: String

    public static var current: HugePageSupport {
        let meminfo = readSmallFile("/proc/meminfo") ?? ""
        func field(_ key: String) -> Int {
            for line in meminfo.split(separator: "\n") where line.hasPrefix(key + ":") {
                let parts = line.split(separator: " ")
                guard parts.count >= 2, let value = Int(parts[1]) else { return 0 }
                return parts.count >= 3 && parts[2] == "kB" ? value * 1024 : value
            }
            return 0
        }
        func selected(_ path: String) -> String {
            guard let text = readSmallFile(path), let open = text.firstIndex(of: "["),
                  let close = text.firstIndex(of: "]") else { return "unavailable" }
            return String(text[text.index(after: open)..<close])
        }
        return HugePageSupport(
            reservedTotal: field("HugePages_Total"), reservedFree: field("HugePages_Free"),
            hugePageSize: max(field("Hugepagesize"), 2 << 20),
            transparentMode: selected("/sys/kernel/mm/transparent_hugepage/enabled"),
            transparentShmemMode: selected("/sys/kernel/mm/transparent_hugepage/shmem_enabled"))
    }

    /// Why `size` bytes of reserved huge pages cannot be had, or nil if they can.
    public func reservedShortfall(for size: Int) -> String? {
        if reservedTotal == 0 {
            return "no huge pages are reserved (HugePages_Total is 0; set vm.nr_hugepages)"
        }
        let needed = (size + hugePageSize - 1) / hugePageSize
        if needed > reservedFree {
            return "\(needed) huge pages of \(ByteCount.format(hugePageSize)) needed, \(reservedFree) free"
        }
        return nil
    }

    public var description: String {
        "reserved: \(reservedFree)/\(reservedTotal) free of \(ByteCount.format(hugePageSize)); THP anonymous: \(transparentMode), shared: \(transparentShmemMode)"
    }
}

extension MemoryMapping {
    /// Best-effort `madvise(MADV_HUGEPAGE)` on the whole mapping; returns
    /// `.transparentHugePages` only if the kernel accepted the advice and its
    /// THP mode for this kind of memory is not `never`/`deny`.
    package func adviseTransparentHugePages(shared: Bool, support: HugePageSupport = .current, range: Range<Int>? = nil) -> PageBacking {
        let mode = shared ? support.transparentShmemMode : support.transparentMode
        guard mode != "never", mode != "deny", mode != "unavailable" else { return .normal }
        do { try advise(.hugePage, range: range) } catch { return .normal }
        return .transparentHugePages
    }
}
