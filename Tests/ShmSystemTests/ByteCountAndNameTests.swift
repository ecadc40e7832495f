import Testing
@testable import ShmSystem

@Suite("Sizes and names")
struct ByteCountAndNameTests {
    @Test(arguments: [
        ("4096", 4096), ("64KiB", 65536), ("64K", 65536), ("1MiB", 1 << 20), ("1m", 1 << 20),
        ("2GiB", 2 << 30), ("1 TiB", 1 << 40), ("10kB", 10_000), ("3MB", 3_000_000), ("7B", 7),
    ])
    func parsesSizes(text: String, bytes: Int) throws {
        #expect(try ByteCount.parse(text) == bytes)
    }

    @Test(arguments: ["", "abc", "-5", "1.5MiB", "12XB", "99999999999999999999", "9999999999TiB"])
    func refusesBadSizes(text: String) {
        #expect(throws: ByteCount.ParseError.self) { try ByteCount.parse(text) }
    }

    @Test func formatsSizes() {
        #expect(ByteCount.format(512) == "512 B")
        #expect(ByteCount.format(4096) == "4 KiB")
        #expect(ByteCount.format(1_572_864) == "1.5 MiB")
        #expect(ByteCount.format(2 << 30) == "2 GiB")
    }

    @Test func acceptsGoodNames() throws {
        let name = try SegmentName("camera.frames_1-a", uid: 1000)
        #expect(name.fileName == "swiftshm.1000.camera.frames_1-a")
        #expect(name.posixName == "/swiftshm.1000.camera.frames_1-a")
        #expect(SegmentName.parse(fileName: name.fileName) == name)
        #expect(SegmentName.parse(fileName: "other.thing") == nil)
    }

    @Test(arguments: [
        ("", "empty"), (String(repeating: "a", count: 101), "at most 100"), ("a/b", "'/'"),
        ("with space", "' '"), ("ünïcode", "byte 0x"), (".hidden", "starts with '.'"),
        ("-dash", "starts with '-'"), ("a..b", "'..'"), ("tab\there", "byte 0x9"),
    ])
    func refusesBadNames(name: String, reasonContains: String) {
        let error = #expect(throws: SegmentError.self) { try SegmentName(name) }
        guard case .invalidName(let got, let reason) = error else {
            Issue.record("expected invalidName, got \(String(describing: error))")
            return
        }
        #expect(got == name)
        #expect(reason.contains(reasonContains), "\(reason)")
    }

    @Test func namesAreNamespacedPerUser() throws {
        let a = try SegmentName("same", uid: 1000)
        let b = try SegmentName("same", uid: 1001)
        #expect(a.fileName != b.fileName)
    }
}
