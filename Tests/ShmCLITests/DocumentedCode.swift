import Foundation

/// Reading the code that documentation shows and the programs that compile
/// it (README, DocC articles, Examples/DocExamples, Examples/ReadmeExamples).
enum DocumentedCode {
    /// The package's root folder.
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func read(_ relativePath: String) throws -> String {
        try String(contentsOf: root.appendingPathComponent(relativePath), encoding: .utf8)
    }

    /// The lines of every ```swift block of a Markdown text, block by block.
    static func swiftBlocks(in markdown: String) -> [[String]] {
        var blocks: [[String]] = []
        var current: [String]?
        for line in lines(markdown) {
            if current == nil, line == "```swift" {
                current = []
            } else if current != nil, line.hasPrefix("```") {
                blocks.append(current!)
                current = nil
            } else if current != nil {
                current!.append(line)
            }
        }
        return blocks
    }

    /// The regions of a source file between a line `<opening><name>` and a
    /// line `// end`, in order, each with its name and text.
    static func regions(in source: String, opening: String) -> [(name: String, text: String)] {
        var regions: [(String, String)] = []
        var current: (name: String, lines: [String])?
        for line in lines(source) {
            if line.hasPrefix(opening) {
                current = (String(line.dropFirst(opening.count)), [])
            } else if line == "// end", let open = current {
                regions.append((open.name, open.lines.joined(separator: "\n")))
                current = nil
            } else if current != nil {
                current!.lines.append(line)
            }
        }
        return regions
    }

    static func lines(_ text: String) -> [String] {
        text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    }
}
