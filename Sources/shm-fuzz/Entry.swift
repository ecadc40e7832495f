#if canImport(Glibc)
import Glibc
#endif
import ShmSystem

// Two builds of one target:
// - normal (`swift build`): `shm-fuzz TARGET FILE|DIR…` replays inputs (the
//   committed corpus in Fuzz/corpus/TARGET), as the test suite does;
// - libFuzzer (`Fuzz/run`, `-sanitize=fuzzer,address -DSHM_LIBFUZZER`):
//   libFuzzer's main drives `LLVMFuzzerTestOneInput`; the target is
//   chosen by the SHM_FUZZ_TARGET environment variable.

#if SHM_LIBFUZZER
import CShmTools

let selectedTarget: FuzzTargets.Target = {
    let name = getenv("SHM_FUZZ_TARGET").map { String(cString: $0) } ?? ""
    guard let target = FuzzTargets.named(name) else {
        StandardStreams.printError("set SHM_FUZZ_TARGET to one of: " + FuzzTargets.all.map(\.name).joined(separator: ", "))
        exit(2)
    }
    return target
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    selectedTarget(UnsafeRawBufferPointer(start: data, count: count))
    return 0
}

// SwiftPM links executables with `main` = `<module>_main`: hand that to
// libFuzzer's driver (its own main is then never linked in).
@_cdecl("shm_fuzz_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var count = argc
    var arguments = argv
    return LLVMFuzzerRunDriver(&count, &arguments) { data, size in fuzzOneInput(data, size) }
}
#else
@main
struct FuzzReplay {
    static func main() {
        let arguments = Array(CommandLine.arguments.dropFirst())
        guard let name = arguments.first, let target = FuzzTargets.named(name) else {
            StandardStreams.printError("usage: shm-fuzz TARGET FILE|DIR…   targets: " + FuzzTargets.all.map(\.name).joined(separator: ", "))
            exit(2)
        }
        var files: [String] = []
        for path in arguments.dropFirst() {
            var st = stat()
            guard stat(path, &st) == 0 else { continue }
            if st.st_mode & S_IFMT == S_IFDIR {
                files += SegmentDirectory.names(in: path).sorted().map { path + "/" + $0 }
            } else {
                files.append(path)
            }
        }
        for file in files {
            guard let bytes = readFileBytes(file) else { continue }
            bytes.withUnsafeBytes { target($0) }
        }
        StandardStreams.printLine("\(name): replayed \(files.count) inputs")
    }

    static func readFileBytes(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            bytes += chunk[..<n]
        }
        return bytes
    }
}
#endif
