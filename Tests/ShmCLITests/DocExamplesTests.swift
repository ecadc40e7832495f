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
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let articles: [String: String] = [
        "position": "Sources/Shm/Shm.docc/GettingStarted.md", "publish": "Sources/Shm/Shm.docc/GettingStarted.md",
        "subscribe": "Sources/Shm/Shm.docc/GettingStarted.md", "receive": "Sources/Shm/Shm.docc/GettingStarted.md",
        "append": "Sources/ShmLog/ShmLog.docc/LogGettingStarted.md", "tail": "Sources/ShmLog/ShmLog.docc/LogGettingStarted.md",
        "overview": "Sources/Shm/Shm.docc/Shm.md", "log-overview": "Sources/ShmLog/ShmLog.docc/ShmLog.md",
    ]

    @Test func everyArticleSnippetIsTheCompiledCode() throws {
        let source = try String(contentsOf: Self.root.appendingPathComponent("Examples/DocExamples/main.swift"), encoding: .utf8)
        var regions: [String: String] = [:]
        var current: (name: String, lines: [String])?
        for line in source.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
            if line.hasPrefix("// snippet: ") {
                current = (String(line.dropFirst("// snippet: ".count)), [])
            } else if line == "// end", let open = current {
                regions[open.name] = open.lines.joined(separator: "\n")
                current = nil
            } else if current != nil {
                current!.lines.append(line)
            }
        }
        #expect(Set(regions.keys) == Set(Self.articles.keys), "\(regions.keys.sorted())")
        for (name, text) in regions {
            let path = try #require(Self.articles[name])
            let article = try String(contentsOf: Self.root.appendingPathComponent(path), encoding: .utf8)
            #expect(!text.isEmpty && article.contains(text), "snippet '\(name)' is not verbatim in \(path):\n\(text)")
        }
    }

    @Test func everySwiftBlockOfTheCatalogsIsCompiled() throws {
        let source = try String(contentsOf: Self.root.appendingPathComponent("Examples/DocExamples/main.swift"), encoding: .utf8)
        let compiledLines = Set(source.split(separator: "\n").map(String.init))
        for catalog in ["Sources/Shm/Shm.docc", "Sources/ShmLog/ShmLog.docc"] {
            let folder = Self.root.appendingPathComponent(catalog)
            for file in try FileManager.default.contentsOfDirectory(atPath: folder.path) where file.hasSuffix(".md") {
                let article = try String(contentsOf: folder.appendingPathComponent(file), encoding: .utf8)
                var block: [String]?
                for line in article.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
                    if block == nil, line == "```swift" {
                        block = []
                    } else if block != nil, line.hasPrefix("```") {
                        // Articles join several regions in one block: every code
                        // line (not blank, comment or import) must be compiled.
                        // A manifest excerpt is not program code.
                        if block!.first != "// Package.swift" {
                            for code in block! where !code.isEmpty && !code.hasPrefix("//") && !code.hasPrefix("import ") {
                                #expect(compiledLines.contains(code), "\(catalog)/\(file): not compiled code: \(code)")
                            }
                        }
                        block = nil
                    } else if block != nil {
                        block!.append(line)
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
