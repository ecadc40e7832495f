#if canImport(Glibc)
import Glibc
#endif
import Testing
import ShmTestSupport
import Shm
@testable import ShmBridge

@Suite("Bridge configuration and wire format")
struct WireFormatTests {
    @Test func patternsMatchWholeNamesWithStarsForAnyRun() {
        #expect(BridgeConfiguration.matches("camera.front", ["camera.*"]))
        #expect(BridgeConfiguration.matches("camera.front.left", ["camera.*"]))
        #expect(!BridgeConfiguration.matches("camera", ["camera.*"]))
        #expect(BridgeConfiguration.matches("a.b.c", ["*.c", "x"]))
        #expect(BridgeConfiguration.matches("frames", ["frames"]))
        #expect(!BridgeConfiguration.matches("frames2", ["frames"]))
        #expect(BridgeConfiguration.matches("anything", ["*"]))
        #expect(BridgeConfiguration.matches("a1b2c", ["a*b*c"]))
        #expect(!BridgeConfiguration.matches("a1b2", ["a*b*c"]))
    }

    @Test func configurationsAreValidated() {
        #expect(throws: BridgeError.self) { try BridgeConfiguration().validate() } // nothing to do
        #expect(throws: BridgeError.self) { try BridgeConfiguration(prefix: "a..b", exports: ["x"]).validate() }
        #expect(throws: BridgeError.self) { try BridgeConfiguration(prefix: "a.>", exports: ["x"]).validate() }
        #expect(throws: BridgeError.self) { try BridgeConfiguration(exports: ["bad name"]).validate() }
        #expect(throws: Never.self) { try BridgeConfiguration(prefix: "site.one", exports: ["camera.*"]).validate() }
    }

    @Test func serviceConfigurationsRoundTripAndHostileOnesAreRefused() {
        let config = PublishSubscribeConfig(maxPublishers: 3, maxSubscribers: 5, subscriberBufferSize: 7, historySize: 2,
                                            maxLoans: 1, maxBorrowed: 2, overflow: .block)
        #expect(WireFormat.decodeConfig(WireFormat.encode(config)) == config)
        for hostile in ["", "publishers=1", "publishers=x,subscribers=1,buffer=1,history=0,loans=1,borrowed=1,overflow=block",
                        "publishers=1,subscribers=1,buffer=99999999999,history=0,loans=1,borrowed=1,overflow=block",
                        "publishers=1,subscribers=1,buffer=1,history=0,loans=1,borrowed=1,overflow=sideways", "=,=,="] {
            #expect(WireFormat.decodeConfig(hostile) == nil, "\(hostile)")
        }
        #expect(WireFormat.sampleSubject(prefix: "swiftshm", service: "camera.front") == "swiftshm.ps.camera.front")
    }

    @Test func importedServicesTakeTheImportPrefixHere() throws {
        let configuration = BridgeConfiguration(imports: ["camera.*"], importPrefix: "site-b.")
        try configuration.validate()
        #expect(configuration.localName(ofImported: "camera.front") == "site-b.camera.front")
        #expect(configuration.remoteName(ofLocal: "site-b.camera.front") == "camera.front")
        #expect(configuration.remoteName(ofLocal: "camera.front") == nil)
        #expect(configuration.remoteName(ofLocal: "site-b.model") == nil)
        #expect(throws: BridgeError.self) { try BridgeConfiguration(imports: ["x"], importPrefix: "bad prefix").validate() }
    }

    @Test func sampleAndTypeHeadersRoundTripAndHostileOnesAreRefused() {
        let whole = WireFormat.SampleInfo(origin: 0xabc, publisher: 0xdef, sequence: 42, timestamp: 1_700_000_000_000_000_000, length: 64)
        #expect(WireFormat.SampleInfo(whole.encoded) == whole)
        let part = WireFormat.SampleInfo(origin: 1, publisher: 2, sequence: 3, timestamp: 4, length: 6_220_800, part: (2, 7, 2_088_960))
        #expect(WireFormat.SampleInfo(part.encoded) == part)
        #expect(WireFormat.SampleInfo("1;2;3;4;0")?.length == 0) // an empty slice
        for hostile in ["", "1;2;3;4", "1;2;3;4;99999999999", "g;2;3;4;5", "1;2;3;4;5;1/1;0", "1;2;3;4;5;3/2;0",
                        "1;2;3;4;5;0/2;6", "1;2;3;4;5;0/2", "1;2;-3;4;5"] {
            #expect(WireFormat.SampleInfo(hostile) == nil, "\(hostile)")
        }
        let type = PayloadType(name: "odd;name", size: 24, alignment: 8)
        let config = PublishSubscribeConfig(overflow: .discard)
        let decoded = WireFormat.decodeType(WireFormat.typeHeader(type, config: config))
        #expect(decoded?.0 == type && decoded?.1 == config)
        #expect(WireFormat.decodeType(WireFormat.typeHeader(type, config: nil))?.1 == nil)
        for hostile in ["", "24;8;;", "x;8;;t", "24;0;;t", "24;8192;;t", "-1;8;;t", "24;8"] {
            #expect(WireFormat.decodeType(hostile) == nil, "\(hostile)")
        }
    }

    /// The byte-level header reading and writing the per-sample path uses
    /// agrees with Swift's own number parsing and formatting at the edges.
    @Test func headerTextReadsAndWritesNumbersAtTheirLimits() {
        func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }
        for value: UInt64 in [0, 1, 9, 10, 255, 1 << 32, UInt64.max - 1, UInt64.max] {
            var writer = HeaderText.Writer()
            writer.decimal(value)
            writer.separator()
            writer.hex(value)
            #expect(writer.text == "\(value);\(String(value, radix: 16))")
            let fields = writer.text.split(separator: ";").map { bytes(String($0)) }
            #expect(fields[0].withUnsafeBufferPointer(HeaderText.decimal) == value)
            #expect(fields[1].withUnsafeBufferPointer(HeaderText.hex) == value)
        }
        for hostile in ["", "18446744073709551616", "99999999999999999999", "+5", "-1", " 5", "5 ", "0x5", "1e3", "٣"] {
            #expect(bytes(hostile).withUnsafeBufferPointer(HeaderText.decimal) == nil, "\(hostile)")
        }
        for hostile in ["", "10000000000000000", "g", "-a", "0x5", " f"] {
            #expect(bytes(hostile).withUnsafeBufferPointer(HeaderText.hex) == nil, "\(hostile)")
        }
        #expect(bytes("DeadBeef").withUnsafeBufferPointer(HeaderText.hex) == 0xdeadbeef)
        #expect(bytes("abc;12").withUnsafeBufferPointer(WireFormat.batchHeader(bytes:))! == (0xabc, 12))
        for hostile in ["abc", "abc;", ";12", "abc;12;1", "abc;99999999", "xyz;1"] {
            #expect(bytes(hostile).withUnsafeBufferPointer(WireFormat.batchHeader(bytes:)) == nil, "\(hostile)")
        }
        // Fields in another order and a field from a newer version are fine.
        let reordered = "overflow=discard,loans=1,borrowed=2,history=0,buffer=7,subscribers=5,publishers=3,priority=9"
        #expect(WireFormat.decodeConfig(reordered) == PublishSubscribeConfig(
            maxPublishers: 3, maxSubscribers: 5, subscriberBufferSize: 7, historySize: 0, maxLoans: 1, maxBorrowed: 2,
            overflow: .discard))
    }

    @Test func batchesRoundTripAndHostileFramesAreRefused() throws {
        var writer = WireFormat.BatchWriter()
        let payloads: [[UInt8]] = [[1], [2, 3, 4, 5, 6, 7, 8, 9], Array(repeating: 0xab, count: 100)]
        for (i, payload) in payloads.enumerated() {
            #expect(payload.withUnsafeBytes { writer.add(publisher: 0x10 + UInt64(i), sequence: UInt64(i + 1), timestamp: 99,
                                                         bytes: $0, limit: 4096) })
        }
        #expect(!payloads[2].withUnsafeBytes { writer.add(publisher: 1, sequence: 9, timestamp: 0, bytes: $0, limit: 200) })
        #expect(writer.count == 3 && writer.payloadBytes == 109)
        try writer.withFrame { frame throws(BridgeError) in
            let entries = WireFormat.batchEntries(frame, count: 3) ?? []
            #expect(entries.count == 3)
            #expect(entries.map(\.publisher) == [0x10, 0x11, 0x12] && entries.map(\.sequence) == [1, 2, 3])
            #expect(entries.map { Array($0.bytes) } == payloads)
            #expect(WireFormat.batchEntries(frame, count: 2) == nil) // bytes left over
            #expect(WireFormat.batchEntries(frame, count: 4) == nil) // an entry missing
            #expect(WireFormat.batchEntries(UnsafeRawBufferPointer(rebasing: frame[..<(frame.count - 8)]), count: 3) == nil)
            var hostile = Array(frame)
            hostile.withUnsafeMutableBytes { $0.storeBytes(of: UInt32(1 << 30), toByteOffset: 24, as: UInt32.self) }
            #expect(hostile.withUnsafeBytes { WireFormat.batchEntries($0, count: 3) } == nil)
        }
        #expect(WireFormat.batchEntries(UnsafeRawBufferPointer(start: nil, count: 0), count: 0) == nil)
    }
}

/// `shm bridge --config FILE`: the file's settings are used (and flags add
/// to them); a file that is not a configuration is refused by name.
@Suite("Bridge configuration files", .serialized)
struct BridgeConfigFileTests {
    @Test func aConfigurationFileIsReadAndABadOneIsRefused() throws {
        guard let server = try NatsServerProcess.start() else { return }
        let path = TestSupport.temporaryPath("bridge") + ".json"
        defer { unlink(path) }
        let text = """
            {"url": "\(server.url)", "name": "from-file", "export": ["camera.*"], "import": ["model.results"],
             "importPrefix": "site-b.", "batching": false, "exportWait": "yield"}
            """
        _ = text.withCString { text in
            let fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0o600)
            defer { close(fd) }
            return write(fd, text, strlen(text))
        }
        let bridge = try BridgeProcess(try TestSupport.spawnCLI(["bridge", "--config", path, "--export", "extra"]))
        #expect(bridge.process.outputText.contains("exporting [\"camera.*\", \"extra\"], importing [\"model.results\"]"),
                "\(bridge.process.outputText)")
        #expect(bridge.process.outputText.contains("batching off, export wait yield, send buffered"), "\(bridge.process.outputText)")
        _ = try bridge.stop()
        // Flags win over the file; by default batching is on and the export thread parks.
        let flagged = try BridgeProcess(try TestSupport.spawnCLI(["bridge", "--config", path, "--batch", "--export-wait", "spin",
                                                                  "--send-immediately"]))
        #expect(flagged.process.outputText.contains("batching on, export wait spin, send immediately"), "\(flagged.process.outputText)")
        _ = try flagged.stop()
        let plain = try BridgeProcess(try TestSupport.spawnCLI(["bridge", "--url", server.url, "--export", "x"]))
        #expect(plain.process.outputText.contains("batching on, export wait park, send buffered"), "\(plain.process.outputText)")
        _ = try plain.stop()
        let wrong = try TestSupport.runCLI(["bridge", "--url", server.url, "--export", "x", "--export-wait", "sometimes"])
        #expect(wrong.status != .exited(0) && wrong.error.contains("export-wait"), "\(wrong.error)")
        _ = "not json".withCString { text in
            let fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0o600)
            defer { close(fd) }
            return write(fd, text, strlen(text))
        }
        let refused = try TestSupport.runCLI(["bridge", "--config", path])
        #expect(refused.status != .exited(0) && refused.error.contains("is not a bridge configuration"), "\(refused.error)")
    }
}
