#if canImport(Glibc)
import Glibc
#endif
import Testing
import ShmTestSupport
@_spi(ShmInternals) import ShmPrimitives
@testable import Shm

/// Pools that grow with what is in flight (`PoolAllocation`): memory,
/// segments, what crosses processes, and what a dead or departed publisher
/// leaves.
@Suite("Growing pools")
struct GrowingPoolTests {
    /// The names of every pool segment of service `name` now in /dev/shm.
    static func poolSegments(of name: String) -> [String] {
        SegmentDirectory.entries().compactMap { SegmentName.parse(fileName: $0)?.name }.filter { $0.hasPrefix("svc.\(name).p") }.sorted()
    }

    /// Memory follows what is in flight: a 4 MB-sample service reserves
    /// 140 × 4 MB = 560 MB up front; growing, its publisher starts with a
    /// few hundred bytes, and holding 23 samples of 1 MB takes ~32 chunks.
    /// Then a steady stream grows nothing.
    @Test func aGrowingPoolStartsSmallAndGrowsWithWhatIsInFlight() throws {
        let name = TestSupport.uniqueName("grow")
        let node = try Node(name: "test")
        let service = try growthService(node, name)
        let publisher = try service.publisher()
        let reserved = ChunkPool.size(chunkCount: service.config.chunksPerPublisher, payloadCapacity: 4_000_000, alignment: 1)
        var footprint = publisher.footprint
        #expect(footprint.segments == 1 && footprint.chunks == 8 && footprint.chunkCapacity == 64)
        #expect(footprint.bytes <= 16 * 1024, "a few pages: \(footprint)")
        let subscriber = try service.subscriber()
        #expect(try publisher.waitForSubscribers(1, timeout: .seconds(5)))

        // 23 samples of 1 MB in flight (the subscriber reads none yet).
        let length = 1_000_000
        for n in 0..<23 {
            let sample = try publisher.loanUninitialized(count: length)
            withUnsafeBytes(of: UInt64(n)) { for i in 0..<8 { sample.unsafeBuffer[i] = $0[i] } }
            for i in stride(from: 8, to: length, by: 4096) { sample.unsafeBuffer[i] = UInt8(truncatingIfNeeded: n + i) }
            try sample.assumeInitialized().send()
        }
        footprint = publisher.footprint
        #expect(footprint.chunkCapacity == 1 << 20, "the next power of two of 1 MB")
        #expect(footprint.chunks - 8 >= 23 && footprint.chunks - 8 <= 2 * 23, "\(footprint)")
        #expect(footprint.segments == footprint.grown + 1 && footprint.grown >= 2, "larger chunks, then more of them: \(footprint)")
        #expect(footprint.bytes < reserved / 10, "\(footprint.bytes) of \(reserved) reserved")
        #expect(Self.poolSegments(of: name).count == footprint.segments)
        let port = try #require(ServiceDirectory.inspect(name).ports.first { $0.kind == "publisher" })
        #expect(port.poolSegments == footprint.segments && port.poolChunks == footprint.chunks)
        #expect(port.poolChunkCapacity == 1 << 20)
        #expect((port.memoryBytes ?? 0) >= footprint.bytes)

        for n in 0..<23 {
            let sample = try subscriber.receive(timeout: .seconds(5))
            #expect(sample.count == length)
            var number: UInt64 = 0
            withUnsafeMutableBytes(of: &number) { for i in 0..<8 { $0[i] = sample.unsafeBuffer[i] } }
            #expect(number == UInt64(n))
            #expect(sample.unsafeBuffer[8 + 4096 * 3] == UInt8(truncatingIfNeeded: n + 8 + 4096 * 3))
        }
        // Steady state: one in flight at a time, 2,000 times, grows nothing.
        let grown = publisher.footprint
        for n in 0..<2_000 {
            let sample = try publisher.loanUninitialized(count: n % 2 == 0 ? length : 100)
            sample.unsafeBuffer[0] = UInt8(truncatingIfNeeded: n)
            try sample.assumeInitialized().send()
            let received = try subscriber.receive(timeout: .seconds(5))
            #expect(received.unsafeBuffer[0] == UInt8(truncatingIfNeeded: n))
        }
        #expect(publisher.footprint == grown)
    }

    /// A loan larger than the chunks retires their segments; a retired
    /// segment is unlinked once its last sample came back (and the
    /// publisher collected it), not while a subscriber still holds one.
    @Test func aRetiredSegmentGoesWithItsLastSample() throws {
        let name = TestSupport.uniqueName("retire")
        let node = try Node(name: "test")
        let service = try growthService(node, name)
        let publisher = try service.publisher(allocation: .growing(initialChunks: 2))
        let subscriber = try service.subscriber()
        #expect(try publisher.waitForSubscribers(1, timeout: .seconds(5)))
        func send(_ length: Int, _ mark: UInt8) throws {
            let sample = try publisher.loanUninitialized(count: length)
            sample.unsafeBuffer[length - 1] = mark
            try sample.assumeInitialized().send()
        }
        try send(100_000, 1) // segment 1: chunks of 128 KiB
        let held = try subscriber.receive(timeout: .seconds(5))
        #expect(held.unsafeBuffer[99_999] == 1)
        try send(2_000_000, 2) // segment 2: chunks of 2 MiB; segment 1 retired, still held
        #expect(publisher.footprint.chunkCapacity == 2 << 20)
        #expect(Self.poolSegments(of: name).contains { $0.hasSuffix("-1") }, "a held sample keeps its segment")
        #expect(held.unsafeBuffer[99_999] == 1, "and its bytes")
        _ = consume held
        // The publisher collects returns when its free chunks run out.
        for n in 0..<6 {
            _ = try subscriber.receive(timeout: .seconds(5))
            try send(2_000_000, UInt8(n))
        }
        _ = try subscriber.receive(timeout: .seconds(5))
        #expect(!Self.poolSegments(of: name).contains { $0.hasSuffix("-1") }, "\(Self.poolSegments(of: name))")
        #expect(publisher.footprint.retired == 1)
    }

    /// A growing pool can always hold what the service's limits allow in
    /// flight, at any chunk size: with 6 chunks allowed (1 subscriber ×
    /// (buffer 2 + borrowed 2) + 2 loans), two small samples held while the
    /// pool moves to larger chunks give their slots up only when they come
    /// back, and the larger chunks take the rest.
    @Test func aGrowingPoolAlwaysHoldsWhatTheLimitsAllowInFlight() throws {
        let node = try Node(name: "test")
        let service = try node.publishSubscribe(TestSupport.uniqueName("growlimit"), slicesOf: UInt8.self, maxLength: 1 << 20,
                                                config: .init(maxPublishers: 1, maxSubscribers: 1, subscriberBufferSize: 2,
                                                              maxLoans: 2, maxBorrowed: 2, overflow: .block))
        #expect(service.config.chunksPerPublisher == 6)
        let publisher = try service.publisher(allocation: .growing(initialChunks: 8))
        publisher.sendTimeout = .zero
        let subscriber = try service.subscriber()
        #expect(try publisher.waitForSubscribers(1, timeout: .seconds(5)))
        #expect(publisher.footprint.chunks == 6)
        try publisher.send(copyOf: [1] as [UInt8])
        try publisher.send(copyOf: [2] as [UInt8])
        var small1: ReceivedSample<UInt8>? = try subscriber.receive(timeout: .seconds(1))
        var small2: ReceivedSample<UInt8>? = try subscriber.receive(timeout: .seconds(1))
        // Larger chunks, while the two small ones are held: 4 of them.
        try publisher.send(copyOf: [UInt8](repeating: 3, count: 1000))
        try publisher.send(copyOf: [UInt8](repeating: 4, count: 1000))
        var loanA: UninitializedSample<UInt8>? = try publisher.loanUninitialized(count: 1000)
        var loanB: UninitializedSample<UInt8>? = try publisher.loanUninitialized(count: 1000)
        #expect(publisher.footprint.chunkCapacity == 1024)
        #expect(small1?.unsafeBuffer.first == 1 && small2?.unsafeBuffer.first == 2)
        small1 = nil
        small2 = nil
        // 2 borrowed + 2 queued + 2 loaned, all large now: the small ones' slots come back.
        let got3 = try subscriber.receive(timeout: .seconds(1)), got4 = try subscriber.receive(timeout: .seconds(1))
        #expect(got3.unsafeBuffer.first == 3 && got4.unsafeBuffer.first == 4)
        try loanA.take()!.initialize { $0.update(repeating: 5) }.send()
        try loanB.take()!.initialize { $0.update(repeating: 6) }.send()
        loanA = try publisher.loanUninitialized(count: 1000)
        loanB = try publisher.loanUninitialized(count: 1000)
        #expect(publisher.footprint.chunks - 6 == 6, "segment 0's six, and six of 1 KiB: \(publisher.footprint)")
        _ = got3.count + got4.count
        loanA = nil
        loanB = nil
    }

    /// A subscriber attached to a publisher whose pool grew, but not yet to
    /// the newest segment, keeps every segment's name after the publisher
    /// leaves — even with nothing queued (it may have popped a reference it
    /// is about to resolve) — until it notices the departure and lets go.
    @Test func aDepartedGrownPoolWaitsForAnAttachedSubscriberToLetGo() throws {
        let name = TestSupport.uniqueName("growleave")
        let node = try Node(name: "test")
        let service = try growthService(node, name)
        var publisher: Publisher<UInt8>? = try service.publisher(allocation: .growing(initialChunks: 2))
        let subscriber = try service.subscriber()
        #expect(try publisher!.waitForSubscribers(1, timeout: .seconds(5)))
        try publisher!.send(copyOf: [7] as [UInt8])
        #expect(try subscriber.receive(timeout: .seconds(1)).unsafeBuffer.first == 7) // attached, segment 0 mapped
        _ = try publisher!.loanUninitialized(count: 100_000) // grows to segment 1; the loan is dropped unsent
        #expect(Self.poolSegments(of: name).count == 2)
        publisher = nil
        #expect(Self.poolSegments(of: name).count == 2, "kept for the attached subscriber")
        #expect(try subscriber.tryReceive() == nil)
        #expect(Self.poolSegments(of: name).isEmpty, "\(Self.poolSegments(of: name))")
    }

    /// A publisher in another process sends 120 samples from 8 B to 4 MB
    /// (its pool grows five times in chunk size) and leaves at once: every
    /// sample arrives intact and in order — from segments we had not mapped
    /// when it left — and then none of its segments is left in /dev/shm.
    @Test func samplesFromEverySegmentArriveAfterTheirPublisherLeft() throws {
        let name = TestSupport.uniqueName("growx")
        let node = try Node(name: "test")
        let subscriber = try growthService(node, name).subscriber()
        let peer = try TestSupport.spawnPeer(["grow-pub", name, "120", "0"])
        var intact = 0
        for n in 0..<120 {
            let sample = try subscriber.receive(timeout: .seconds(30))
            if growthSampleIsIntact(sample.unsafeBuffer, n, of: 120) { intact += 1 }
        }
        #expect(intact == 120)
        try expectSuccess(peer)
        let line = peer.outputText
        #expect(line.hasPrefix("sent 120 in"), "\(line)")
        let grown = line.split(separator: "(").last.flatMap { Int($0.split(separator: " ")[0]) } ?? 0
        #expect(grown >= 5, "\(line)")
        #expect(try subscriber.tryReceive() == nil)
        #expect(eventually { Self.poolSegments(of: name).isEmpty }, "\(Self.poolSegments(of: name))")
    }

    /// SIGKILL a publisher whose grown pool still has 60 samples queued for
    /// us (in segments we never mapped): we read every one, and reclaiming
    /// the dead port then removes all of its segments.
    @Test func aKilledPublishersGrownPoolIsReadThenRemoved() throws {
        try TestSupport.aroundDeadPeers {
            let name = TestSupport.uniqueName("growkill")
            let node = try Node(name: "test")
            let service = try growthService(node, name)
            let subscriber = try service.subscriber()
            let peer = try TestSupport.spawnPeer(["grow-pub", name, "60", "1"])
            let line = try peer.readLine(timeout: .seconds(60)) ?? ""
            #expect(line.hasPrefix("sent 60 in"), "\(line) \(peer.errorText)")
            peer.kill()
            _ = try peer.wait(timeout: .seconds(10))
            #expect(Self.poolSegments(of: name).count >= 5, "\(Self.poolSegments(of: name))")
            var intact = 0
            for n in 0..<60 {
                let sample = try subscriber.receive(timeout: .seconds(10))
                if growthSampleIsIntact(sample.unsafeBuffer, n, of: 60) { intact += 1 }
            }
            #expect(intact == 60)
            service.reclaimDeadPorts() // (or another test's cleanup did it first)
            #expect(!service.ports.contains { $0.kind == "publisher" })
            #expect(try subscriber.tryReceive() == nil)
            #expect(eventually { Self.poolSegments(of: name).isEmpty }, "\(Self.poolSegments(of: name))")
        }
    }

    /// A loan that needs a segment /dev/shm cannot hold fails with
    /// `insufficientSpace` naming the sizes — never SIGBUS — and leaves
    /// nothing behind: the pool keeps working at its size.
    @Test func aFullDevShmIsAClearErrorFromTheLoanThatGrows() throws {
        var fs = statvfs()
        try #require(statvfs("/dev/shm", &fs) == 0)
        let capacity = Int(fs.f_blocks) * Int(fs.f_frsize)
        let maxLength = Int(UInt32.max)
        // Chunks of 4 GiB, more of them than the whole filesystem holds.
        let chunks = capacity / maxLength + 2
        guard chunks <= 100 else {
            print("skipped: /dev/shm (\(capacity) bytes) is too large to fill with 100 chunks of 4 GiB")
            return
        }
        let name = TestSupport.uniqueName("growfull")
        let node = try Node(name: "test")
        let service = try node.publishSubscribe(name, slicesOf: UInt8.self, maxLength: maxLength)
        let publisher = try service.publisher(allocation: .growing(initialChunks: chunks))
        let subscriber = try service.subscriber()
        #expect(try publisher.waitForSubscribers(1, timeout: .seconds(5)))
        let before = publisher.footprint
        let error = #expect(throws: ServiceError.self) { _ = try publisher.loanUninitialized(count: maxLength) }
        guard case .segment(.insufficientSpace(let segment, let requested, _, _)) = error else {
            Issue.record("expected insufficientSpace, got \(String(describing: error))")
            return
        }
        #expect(segment.hasSuffix("-1") && requested > capacity)
        #expect(publisher.footprint == before)
        #expect(Self.poolSegments(of: name).count == 1)
        try publisher.send(copyOf: [1, 2, 3] as [UInt8])
        #expect(Array(try subscriber.receive(timeout: .seconds(5)).unsafeBuffer) == [1, 2, 3])
    }

    /// A segment a subscriber cannot map (here: its header damaged) is an
    /// error naming why, for each sample from it — tried again each time,
    /// not skipped for good — and every such sample goes back to the pool.
    @Test func aSegmentThatCannotBeMappedIsAnErrorEachTime() throws {
        let name = TestSupport.uniqueName("growdamaged")
        let node = try Node(name: "test")
        let service = try growthService(node, name)
        let publisher = try service.publisher(allocation: .growing(initialChunks: 2))
        let subscriber = try service.subscriber()
        #expect(try publisher.waitForSubscribers(1, timeout: .seconds(5)))
        try publisher.send(copyOf: [1] as [UInt8])
        #expect(try subscriber.receive(timeout: .seconds(1)).unsafeBuffer.first == 1)
        try publisher.send(copyOf: [UInt8](repeating: 2, count: 5_000)) // segment 1
        try publisher.send(copyOf: [UInt8](repeating: 3, count: 5_000))
        let segmentName = try ServiceName(name).poolSegmentName(publisher.portID, segment: 1)
        let segment = try SharedMemorySegment.open(segmentName, kind: ChunkPool.kind)
        segment.data.write([0xff], at: 9) // a header field: the checksum no longer matches
        for _ in 0..<2 {
            #expect { _ = try subscriber.receive(timeout: .seconds(1)) } throws: { error in
                guard case ServiceError.corrupt(_, let reason) = error else { return false }
                return reason.contains("checksum")
            }
        }
        // Both came back: the publisher's next collection finds them.
        publisher.port.reclaimReturns()
        #expect(publisher.port.local.pointee.freeCount == publisher.footprint.chunks - 2,
                "all of segment 1's chunks free again (segment 0's two retired)")
    }

    /// A reference naming a segment the pool does not have, or a chunk past
    /// a segment's end, is a `.corrupt` error for that sample — no crash, no
    /// read outside a mapping — and the next sample arrives.
    @Test func aReferenceIntoNoSegmentIsCorruptNotACrash() throws {
        let name = TestSupport.uniqueName("growbad")
        let node = try Node(name: "test")
        let service = try growthService(node, name)
        let publisher = try service.publisher()
        let subscriber = try service.subscriber()
        #expect(try publisher.waitForSubscribers(1, timeout: .seconds(5)))
        for bad in [ChunkReference.id(segment: 200, index: 0), ChunkReference.id(segment: 0, index: 1_000), ChunkPool.noHint] {
            let sample = try publisher.loanUninitialized(count: 16)
            let port = publisher.port
            let slot = sample.chunk
            let good = port.chunkIDs[slot]
            port.chunkIDs[slot] = bad // as a hostile publisher would send it
            try sample.assumeInitialized().send()
            port.chunkIDs[slot] = good
            #expect { _ = try subscriber.receive(timeout: .seconds(5)) } throws: { error in
                guard case ServiceError.corrupt(_, let reason) = error else { return false }
                return reason.contains("outside its pool")
            }
            try publisher.send(copyOf: [9, 9] as [UInt8])
            #expect(Array(try subscriber.receive(timeout: .seconds(5)).unsafeBuffer) == [9, 9])
        }
    }
}
