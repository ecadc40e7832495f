import Testing
import ShmSystem
import ShmTestSupport

/// Every input in Fuzz/corpus (what libFuzzer found interesting, and the
/// inputs of bugs it found) replayed through the normal build of each
/// decoder: none may crash or hang. `Fuzz/run` does the fuzzing itself.
@Suite("Fuzz corpus replay")
struct FuzzCorpusTests {
    static let corpus: String = {
        let file = #filePath // …/Tests/ShmCLITests/FuzzCorpusTests.swift
        let tests = file[..<file.range(of: "/Tests/ShmCLITests/")!.lowerBound]
        return String(tests) + "/Fuzz/corpus"
    }()

    @Test(arguments: ["segment-header", "layout-header", "service-layout", "publisher-pool", "subscriber-inbox",
                      "index-queue", "spsc-ring", "mpmc-queue", "log-wire", "log-files", "recorded-sample"])
    func replayCorpus(target: String) throws {
        let directory = FuzzCorpusTests.corpus + "/" + target
        let files = SegmentDirectory.names(in: directory)
        #expect(!files.isEmpty, "no corpus for \(target) in \(directory)")
        let replay = try ChildProcess.spawn(TestSupport.productsDirectory + "/shm-fuzz", arguments: [target, directory], captureOutput: true)
        let status = try replay.wait(timeout: .seconds(120))
        #expect(status == .exited(0), "\(replay.errorText)")
        #expect(replay.outputText.contains("\(target): replayed \(files.count) inputs"), "\(replay.outputText)")
    }
}
