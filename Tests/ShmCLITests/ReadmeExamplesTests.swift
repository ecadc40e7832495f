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
    @Test func everyReadmeBlockIsTheCompiledCode() throws {
        let blocks = DocumentedCode.swiftBlocks(in: try DocumentedCode.read("README.md"))
            .map { $0.filter { !$0.hasPrefix("import ") }.joined(separator: "\n") }
        let regions = DocumentedCode.regions(in: try DocumentedCode.read("Examples/ReadmeExamples/main.swift"), opening: "// readme: ")
            .map { (number: Int($0.name) ?? -1, text: $0.text) }
        #expect(blocks.count >= 6, "the README has lost its Swift examples?")
        #expect(regions.map(\.number) == Array(1...regions.count), "regions must be numbered 1, 2, … in order")
        #expect(blocks.count == regions.count, "README has \(blocks.count) Swift blocks, Examples/ReadmeExamples \(regions.count)")
        for (index, block) in blocks.enumerated() where index < regions.count {
            #expect(block == regions[index].text, "README Swift block \(index + 1) differs from Examples/ReadmeExamples region \(index + 1):\n\(block)")
        }
    }
}
