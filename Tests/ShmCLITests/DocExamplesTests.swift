import Foundation
import Testing
import ShmTestSupport
import Shm

/// The DocC articles' code compiles and runs: every region of
/// Examples/DocExamples/main.swift between `// snippet: NAME` and `// end`
/// must appear verbatim in its article, and the program must run (the two
/// overview pages' code is compiled, not run). And no article holds Swift
/// code that is not one of these regions.
@Suite("Documentation examples")
struct DocExamplesTests {
    static let articles: [String: String] = [
        "position": "Sources/Shm/Shm.docc/GettingStarted.md", "publish": "Sources/Shm/Shm.docc/GettingStarted.md",
        "subscribe": "Sources/Shm/Shm.docc/GettingStarted.md", "receive": "Sources/Shm/Shm.docc/GettingStarted.md",
        "append": "Sources/ShmLog/ShmLog.docc/LogGettingStarted.md", "tail": "Sources/ShmLog/ShmLog.docc/LogGettingStarted.md",
        "overview": "Sources/Shm/Shm.docc/Shm.md", "log-overview": "Sources/ShmLog/ShmLog.docc/ShmLog.md",
    ]

    @Test func everyArticleSnippetIsTheCompiledCode() throws {
        let source = try DocumentedCode.read("Examples/DocExamples/main.swift")
        let regions = Dictionary(DocumentedCode.regions(in: source, opening: "// snippet: "), uniquingKeysWith: { a, _ in a })
        #expect(Set(regions.keys) == Set(Self.articles.keys), "\(regions.keys.sorted())")
        for (name, text) in regions {
            let path = try #require(Self.articles[name])
            let article = try DocumentedCode.read(path)
            #expect(!text.isEmpty && article.contains(text), "snippet '\(name)' is not verbatim in \(path):\n\(text)")
        }
    }

    /// Articles join several regions in one block: every code line (not
    /// blank, comment or import) of every catalog's Swift blocks must be in
    /// a compiled program (a manifest excerpt is not program code).
    @Test func everySwiftBlockOfTheCatalogsIsCompiled() throws {
        let compiledLines = Set(try ["Examples/DocExamples/main.swift", "Examples/ReadmeExamples/main.swift"]
            .flatMap { DocumentedCode.lines(try DocumentedCode.read($0)) })
        for catalog in ["Sources/Shm/Shm.docc", "Sources/ShmLog/ShmLog.docc", "Sources/ShmReplay/ShmReplay.docc",
                        "Sources/ShmMetrics/ShmMetrics.docc", "Sources/ShmBridge/ShmBridge.docc"] {
            let folder = DocumentedCode.root.appendingPathComponent(catalog)
            for file in try FileManager.default.contentsOfDirectory(atPath: folder.path) where file.hasSuffix(".md") {
                let article = try DocumentedCode.read(catalog + "/" + file)
                for block in DocumentedCode.swiftBlocks(in: article) where block.first != "// Package.swift" {
                    for code in block where !code.isEmpty && !code.hasPrefix("//") && !code.hasPrefix("import ") {
                        #expect(compiledLines.contains(code), "\(catalog)/\(file): not compiled code: \(code)")
                    }
                }
            }
        }
    }

    @Test func theArticlesProgramRuns() throws {
        let child = try ChildProcess.spawn(TestSupport.productsDirectory + "/doc-examples", captureOutput: true)
        #expect(try child.wait(timeout: .seconds(60)) == .exited(0), "\(child.errorText)")
        #expect(child.outputText == "received tick 1 at x 0.5\nrecord 1: 5 bytes\nrecord 2: 8 bytes\n", "\(child.outputText)")
    }
}
