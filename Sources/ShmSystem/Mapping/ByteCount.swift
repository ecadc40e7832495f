/// Parsing and printing of byte sizes such as `4096`, `64KiB`, `1MiB`, `2GiB`.
///
/// Binary suffixes (`K`, `KiB`, `M`, `MiB`, `G`, `GiB`, `T`, `TiB`, case-insensitive,
/// optional `B`) multiply by powers of 1024; the decimal SI forms `kB`, `KB`,
/// `MB`, `GB`, `TB` multiply by powers of 1000. Fractions are refused: a size
/// is a whole number of bytes.
public enum ByteCount {
    /// Why a size string was refused.
    public struct ParseError: Error, Equatable, Sendable, CustomStringConvertible {
        public let input: String
        public let reason: String
        public var description: String { "invalid size '\(input)': \(reason)" }
    }

    /// Parses `text` into a byte count.
    public static func parse(_ text: String) throws(ParseError) -> Int {
        let trimmed = text.trimmingSpaces
        guard !trimmed.isEmpty else { throw ParseError(input: text, reason: "empty") }
        let digits = trimmed.prefix(while: { $0.isASCII && $0.isNumber })
        guard !digits.isEmpty else {
            throw ParseError(input: text, reason: "expected a number of bytes, e.g. 4096, 64KiB, 1MiB, 2GiB")
        }
        let suffix = trimmed.dropFirst(digits.count).trimmingSpaces
        let multiplier: Int
        switch suffix.lowercased() {
        case "", "b": multiplier = 1
        case "k", "ki", "kib": multiplier = 1 << 10
        case "m", "mi", "mib": multiplier = 1 << 20
        case "g", "gi", "gib": multiplier = 1 << 30
        case "t", "ti", "tib": multiplier = 1 << 40
        case "kb": multiplier = 1_000
        case "mb": multiplier = 1_000_000
        case "gb": multiplier = 1_000_000_000
        case "tb": multiplier = 1_000_000_000_000
        default:
            throw ParseError(input: text, reason: "unknown unit '\(suffix)' (use B, KiB, MiB, GiB, TiB, or kB, MB, GB, TB)")
        }
        guard let value = Int(digits) else { throw ParseError(input: text, reason: "number too large") }
        let (bytes, overflow) = value.multipliedReportingOverflow(by: multiplier)
        guard !overflow else { throw ParseError(input: text, reason: "number too large") }
        return bytes
    }

    /// Formats a byte count with the largest binary unit that keeps it ≥ 1,
    /// e.g. `4096` → `4 KiB`, `1572864` → `1.5 MiB`.
    public static func format(_ bytes: Int) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
        var value = Double(bytes)
        var unit = 0
        while abs(value) >= 1024, unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        if unit == 0 { return "\(bytes) B" }
        let rounded = (value * 10).rounded() / 10
        if rounded == rounded.rounded() { return "\(Int(rounded)) \(units[unit])" }
        return "\(rounded) \(units[unit])"
    }
}

extension StringProtocol {
    var trimmingSpaces: Substring {
        let s = Substring(self)
        guard let first = s.firstIndex(where: { !$0.isWhitespace }) else { return s[s.endIndex...] }
        let last = s.lastIndex(where: { !$0.isWhitespace })!
        return s[first...last]
    }
}
