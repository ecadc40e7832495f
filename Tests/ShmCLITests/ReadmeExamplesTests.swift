import Foundation
import Testing

/// The README's Swift code compiles: every ```swift block of README.md, its
/// `import` lines aside, must be the region between `// readme: N` and
/// `// end` of Examples/ReadmeExamples/main.swift, in order and verbatim —
/// and that file is built with the package (target `readme-examples`, a
/// dependency of these tests), so a README that drifts from the API fails
/// here or fails to build.
@Suite("README examples")
struct ReadmeExamplesTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func readmeBlocks() throws -> [String] {
        let readme = try String(contentsOf: root.appendingPathComponent("README.md"), encoding: .utf8)
        var blocks: [String] = []
        var current: [String]?
        for line in readme.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
            if current == nil, line == "```swift" {
                current = []
            } else if current != nil, line.hasPrefix("```") {
                blocks.append(current!.filter { !$0.hasPrefix("import ") }.joined(separator: "\n"))
                current = nil
            } else if current != nil {
                current!.append(line)
            }
        }
        return blocks
    }

    static func compiledRegions() throws -> [(number: Int, text: String)] {
        let source = try String(contentsOf: root.appendingPathComponent("Examples/ReadmeExamples/main.swift"), encoding: .utf8)
        var regions: [(Int, String)] = []
        var current: (number: Int, lines: [String])?
        for line in source.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
            if line.hasPrefix("// readme: "), let number = Int(line.dropFirst("// readme: ".count)) {
                current = (number, [])
            } else if line == "// end", let open = current {
                regions.append((open.number, open.lines.joined(separator: "\n")))
                current = nil
            } else if current != nil {
                current!.lines.append(line)
            }
        }
        return regions
    }

    @Test func everyReadmeBlockIsTheCompiledCode() throws {
        let blocks = try Self.readmeBlocks()
        let regions = try Self.compiledRegions()
        #expect(blocks.count >= 6, "the README has lost its Swift examples?")
        #expect(regions.map(\.number) == Array(1...regions.count), "regions must be numbered 1, 2, … in order")
        #expect(blocks.count == regions.count, "README has \(blocks.count) Swift blocks, Examples/ReadmeExamples \(regions.count)")
        for (index, block) in blocks.enumerated() where index < regions.count {
            #expect(block == regions[index].text, "README Swift block \(index + 1) differs from Examples/ReadmeExamples region \(index + 1):\n\(block)")
        }
    }
}
