import ShmSystem

/// How a log is laid out (fixed at creation).
public struct LogConfig: Hashable, Sendable {
    /// Bytes per segment file (64 KiB to 1 GiB, a multiple of 4 KiB).
    public var segmentSize: Int
    /// One index entry per this many bytes of records (a power of two,
    /// 256 B to 1 MiB): lookups by sequence or time scan at most this far.
    public var indexGranularity: Int

    static let segmentSizes = (64 << 10)...(1 << 30)
    static let granularities = 256...(1 << 20)

    public init(segmentSize: Int = 64 << 20, indexGranularity: Int = 4096) {
        self.segmentSize = segmentSize
        self.indexGranularity = indexGranularity
    }

    func validate() throws(LogError) {
        guard LogConfig.segmentSizes.contains(segmentSize), segmentSize % 4096 == 0 else {
            throw .invalidConfiguration("segment size \(segmentSize) must be a multiple of 4 KiB from 64 KiB to 1 GiB")
        }
        guard LogConfig.granularities.contains(indexGranularity), indexGranularity & (indexGranularity - 1) == 0 else {
            throw .invalidConfiguration("index granularity \(indexGranularity) must be a power of two from 256 B to 1 MiB")
        }
    }
}

/// When an appender makes its records durable (`msync(MS_SYNC)` of the
/// pages it wrote). Records are visible to tailers at once under every
/// policy; durability is about power loss and kernel crashes. A killed
/// *process* loses nothing it committed under any policy: the pages are in
/// the page cache, which belongs to the kernel.
/// How an appender stamps its records (wall-clock nanoseconds since 1970).
public enum LogTimestamps: Hashable, Sendable {
    /// `clock_gettime(CLOCK_REALTIME)`: nanosecond resolution, ~20 ns a read.
    case precise
    /// `clock_gettime(CLOCK_REALTIME_COARSE)`: the kernel's last tick — a
    /// few ns a read, resolution `coarseWallClockResolution` (1–4 ms on
    /// common kernels), and it may lag further after idle periods (a
    /// tickless kernel updates it when a CPU takes a tick). Records of one
    /// tick share a timestamp; seeking by time (`TailStart.time`) is then as
    /// fine as that.
    case coarse
}

public enum Durability: Hashable, Sendable, CustomStringConvertible {
    /// Page cache only; the kernel writes back when it likes (typically
    /// within 30 s). Fastest.
    case none
    /// `msync` after every `n` appends of this appender (and on `flush()`,
    /// roll and close): at most n − 1 of its records are at risk.
    case everyRecords(Int)
    /// `msync` on the first append at least this long after the last sync
    /// (and on `flush()`, roll and close): bounded loss in time, checked on
    /// append — no background thread.
    case interval(Duration)
    /// `msync` of the record's pages before `append` returns: an
    /// acknowledged record survives power loss. Costs a write to storage
    /// per record.
    case everyAppend

    public var description: String {
        switch self {
        case .none: return "none"
        case .everyRecords(let n): return "every \(n) records"
        case .interval(let d): return "every \(d)"
        case .everyAppend: return "every append"
        }
    }

    /// Parses `none`, `always`, `records:N`, `interval:DURATION` (as the CLI takes them).
    public init?(parsing text: String) {
        switch text {
        case "none": self = .none
        case "always", "every-append": self = .everyAppend
        default:
            let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { return nil }
            if parts[0] == "records", let n = Int(parts[1]), n > 0 { self = .everyRecords(n); return }
            if parts[0] == "interval", let d = try? parseDuration(parts[1]) { self = .interval(d); return }
            return nil
        }
    }
}

/// What a tailer does when its next segment was deleted by retention.
public enum DeletedSegmentPolicy: Sendable {
    /// Continue at the oldest retained record (the records in between are gone).
    case moveToOldest
    /// Throw `LogError.positionDeleted`.
    case fail
}

/// Where a tailer starts.
public enum TailStart: Hashable, Sendable {
    /// The oldest retained record.
    case start
    /// After the last record: only new ones.
    case end
    /// The record with this sequence number.
    case sequence(UInt64)
    /// The first record with a timestamp at or after this (wall-clock ns).
    case time(UInt64)
    /// A position returned by `append`.
    case position(LogPosition)
}

/// Parses `250ms`, `2s`, `1.5s`, `10us`, `5m`.
func parseDuration(_ text: String) throws -> Duration {
    let units: [(String, Double)] = [("ns", 1e-9), ("us", 1e-6), ("µs", 1e-6), ("ms", 1e-3), ("s", 1), ("m", 60), ("h", 3600)]
    for (suffix, scale) in units where text.hasSuffix(suffix) {
        if let value = Double(text.dropLast(suffix.count)), value >= 0, value.isFinite, value * scale < 9e9 {
            return .nanoseconds(Int64(value * scale * 1e9))
        }
    }
    throw LogError.invalidConfiguration("duration '\(text)' (use e.g. 250ms, 2s, 10us)")
}
