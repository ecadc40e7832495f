import Foundation
import Shm

/// A plain-text table with aligned columns; numbers right-aligned.
struct Table {
    var headers: [String]
    var rows: [[String]] = []
    var rightAligned: Set<Int> = []

    init(_ headers: String...) { self.headers = headers }

    mutating func add(_ row: String...) { rows.append(row) }
    mutating func add(row: [String]) { rows.append(row) }

    func render() -> String {
        var widths = headers.map(\.count)
        for row in rows {
            for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) }
        }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, cell in
                let pad = String(repeating: " ", count: max(0, widths[i] - cell.count))
                return rightAligned.contains(i) ? pad + cell : cell + pad
            }.joined(separator: "  ").trimmingCharacters(in: .whitespaces)
        }
        return ([line(headers)] + rows.map(line)).joined(separator: "\n")
    }
}

/// Prints a value as pretty JSON on stdout.
func printJSON(_ value: some Encodable) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    StandardStreams.printLine(String(decoding: try encoder.encode(value), as: UTF8.self))
}

/// Prints one JSON object on one line (for streams of rows).
func printJSONLine(_ value: some Encodable) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    StandardStreams.printLine(String(decoding: try encoder.encode(value), as: UTF8.self))
}

/// `0600`-style octal mode.
func octal(_ mode: UInt32) -> String {
    let digits = String(mode, radix: 8)
    return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
}

/// ISO-8601 UTC time from nanoseconds since the epoch.
func isoTime(nanoseconds: UInt64) -> String {
    let date = Date(timeIntervalSince1970: Double(nanoseconds) / 1e9)
    let formatter = ISO8601DateFormatter()
    formatter.formatOptions = [.withInternetDateTime]
    return formatter.string(from: date)
}

/// A short local time for tables.
func shortTime(nanoseconds: UInt64) -> String {
    let date = Date(timeIntervalSince1970: Double(nanoseconds) / 1e9)
    let formatter = DateFormatter()
    formatter.dateFormat = "yyyy-MM-dd HH:mm:ss"
    return formatter.string(from: date)
}
