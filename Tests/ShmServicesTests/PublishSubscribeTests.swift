#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import Testing
import ShmTestSupport
@testable import Shm
@_spi(ShmInternals) import ShmPrimitives

struct MissingSample: Error {}

/// Unwraps an optional received sample (`#require` cannot take noncopyable values).
func unwrap<P: BitwiseCopyable>(_ value: consuming ReceivedSample<P>?) throws -> ReceivedSample<P> {
    switch consume value {
    case .some(let sample): return sample
    case .none: throw MissingSample()
    }
}

struct Reading: BitwiseCopyable, Equatable {
    var sequence: UInt64
    var value: Double
}

@Suite("Publish/subscribe in one process")
struct PublishSubscribeTests {
    @Test func loanWriteSendReceive() throws {
        let node = try Node(name: "unit")
        let service = try node.publishSubscribe(TestSupport.uniqueName("ps"), of: Reading.self)
        let subscriber = try service.subscriber()
        let publisher = try service.publisher()
        #expect(try subscriber.tryReceive() == nil)
        let reached = try publisher.loanUninitialized().write(Reading(sequence: 1, value: 2.5)).send()
        #expect(reached == 1)
        let sample = try unwrap(try subscriber.tryReceive())
        #expect(sample.payload == Reading(sequence: 1, value: 2.5))
        #expect(sample.sequence == 1)
        #expect(sample.publisherID == publisher.portID)
        #expect(subscriber.borrowedSamples == 1)
        sample.release()
        #expect(subscriber.borrowedSamples == 0)
        try publisher.send(copyOf: Reading(sequence: 2, value: 3))
        #expect(try subscriber.receive(timeout: .seconds(1)).payload.sequence == 2)
    }

    /// Samples refer to their ports without reference counting; a port
    /// whose owner is gone must stay until its last sample is dropped.
    @Test func samplesOutliveTheirPublisherAndSubscriber() throws {
        let node = try Node(name: "unit")
        let service = try node.publishSubscribe(TestSupport.uniqueName("outlive"), of: Reading.self)
        var subscriber: Subscriber<Reading>? = try service.subscriber()
        var publisher: Publisher<Reading>? = try service.publisher()
        #expect(try #require(subscriber).tryReceive() == nil) // maps the publisher's pool
        let loaned = try #require(publisher).loanUninitialized()
        let unsent = try #require(publisher).loanUninitialized().write(Reading(sequence: 9, value: 9))
        publisher = nil
        // The pool is still mapped: writing and sending work after the publisher went.
        #expect(try loaned.write(Reading(sequence: 1, value: 1.5)).send() == 1)
        _ = consume unsent // dropped unsent: the port goes with it
        let received = try unwrap(try #require(subscriber).tryReceive())
        subscriber = nil
        #expect(received.payload == Reading(sequence: 1, value: 1.5))
        #expect(received.sequence == 1)
        received.release()
        // A new pair works under the same service name.
        let again = try service.subscriber()
        let publisherAgain = try service.publisher()
        #expect(try publisherAgain.send(copyOf: Reading(sequence: 2, value: 0)) == 1)
        #expect(try again.receive(timeout: .seconds(1)).payload.sequence == 2)
    }

    /// Returns are reclaimed lazily; none may be lost on the way (a return
    /// queue smaller than the pool would drop them and shrink the pool).
    @Test func aFastSubscriberGivesEverySampleBack() throws {
        let node = try Node(name: "unit")
        let service = try node.publishSubscribe(TestSupport.uniqueName("returns"), of: Reading.self)
        let subscriber = try service.subscriber()
        let publisher = try service.publisher()
        for i in 0..<5000 {
            try publisher.send(copyOf: Reading(sequence: UInt64(i), value: 0))
            #expect(try subscriber.tryReceive()?.payload.sequence == UInt64(i))
        }
        publisher.port.reclaimReturns()
        #expect(publisher.port.local.pointee.freeCount == publisher.port.chunkCount)
    }

    /// A subscriber dropped while its samples are still read keeps them safe
    /// from reuse until they are dropped too.
    @Test func samplesOfADroppedSubscriberAreNotReused() throws {
        let node = try Node(name: "unit")
        let service = try node.publishSubscribe(TestSupport.uniqueName("heldback"), of: Reading.self,
                                                config: .init(subscriberBufferSize: 4, maxBorrowed: 2))
        var subscriber: Subscriber<Reading>? = try service.subscriber()
        let publisher = try service.publisher()
        try publisher.send(copyOf: Reading(sequence: 7, value: 7.5))
        let held = try unwrap(try #require(subscriber).tryReceive())
        subscriber = nil
        for i in 0..<(2 * publisher.port.chunkCount) { try publisher.send(copyOf: Reading(sequence: UInt64(100 + i), value: -1)) }
        #expect(held.payload == Reading(sequence: 7, value: 7.5))
        held.release()
        // Once dropped, the subscriber's registration goes.
        #expect(try publisher.send(copyOf: Reading(sequence: 1, value: 0)) == 0)
    }

    @Test func slicesOfBytes() throws {
        let node = try Node(name: "unit")
        let service = try node.publishSubscribe(TestSupport.uniqueName("bytes"), slicesOf: UInt8.self, maxLength: 1000)
        let subscriber = try service.subscriber()
        let publisher = try service.publisher()
        try publisher.send(copyOf: Array("hello".utf8))
        let loaned = try publisher.loanUninitialized(count: 3)
        try loaned.initialize { $0.initialize(repeating: 7) }.send()
        #expect(throws: ServiceError.self) { _ = try publisher.loanUninitialized(count: 1001) }
        #expect(Array(try unwrap(try subscriber.tryReceive()).unsafeBuffer) == Array("hello".utf8))
        #expect(Array(try unwrap(try subscriber.tryReceive()).unsafeBuffer) == [7, 7, 7])
    }

    @Test func everySubscriberGetsEverySampleFromEveryPublisher() throws {
        let node = try Node(name: "unit")
        let service = try node.publishSubscribe(TestSupport.uniqueName("nm"), of: Reading.self,
                                                config: .init(maxPublishers: 3, maxSubscribers: 4, subscriberBufferSize: 64))
        let subscribers = try (0..<4).map { _ in try service.subscriber() }
        let publishers = try (0..<3).map { _ in try service.publisher() }
        for round in 0..<20 {
            for (p, publisher) in publishers.enumerated() {
                #expect(try publisher.send(copyOf: Reading(sequence: UInt64(round), value: Double(p))) == 4)
            }
        }
        for subscriber in subscribers {
            var seen: [Int: [UInt64]] = [:]
            while let sample = try subscriber.tryReceive() { seen[Int(sample.payload.value), default: []].append(sample.payload.sequence) }
            for p in 0..<3 { #expect(seen[p] == (0..<20).map(UInt64.init)) }
        }
    }

    /// In an optimized build a publisher is released after its last use, so
    /// "send, then drop" is the ordinary shape of a program, and in one
    /// thread the subscriber cannot run until the drop is over. What `send`
    /// counted as delivered must still arrive; the pool's name stays until
    /// the last subscriber that had not mapped it has done so.
    @Test func samplesOutliveTheirDroppedPublisher() throws {
        let node = try Node(name: "unit")
        let name = TestSupport.uniqueName("drop")
        let service = try node.publishSubscribe(name, of: Reading.self, config: .init(maxSubscribers: 3, subscriberBufferSize: 8))
        let first = try service.subscriber(), second = try service.subscriber(), third = try service.subscriber()
        var publisher: Publisher<Reading>? = try service.publisher()
        let poolName = try SegmentName("svc.\(name).p\(String(try #require(publisher).portID, radix: 16))")
        for i in 1...5 { #expect(try #require(publisher).send(copyOf: Reading(sequence: UInt64(i), value: 0)) == 3) }
        publisher = nil
        #expect(SharedMemorySegment.exists(poolName))
        func drain(_ subscriber: Subscriber<Reading>) throws -> [UInt64] {
            var got: [UInt64] = []
            while let sample = try subscriber.tryReceive() { got.append(sample.payload.sequence) }
            return got
        }
        #expect(try drain(first) == [1, 2, 3, 4, 5])
        #expect(SharedMemorySegment.exists(poolName)) // two more await it
        #expect(try drain(second) == [1, 2, 3, 4, 5])
        #expect(SharedMemorySegment.exists(poolName))
        // The last one that awaited it goes without receiving: the name goes with it.
        _ = consume third
        #expect(!SharedMemorySegment.exists(poolName))
        // Nothing is left of the publisher; a new one works in its slot.
        let again = try service.publisher()
        #expect(try again.send(copyOf: Reading(sequence: 6, value: 0)) == 2)
        #expect(try drain(first) == [6])
    }

    /// A publisher that comes while a departed one's samples still wait
    /// takes another slot (block i of each inbox belongs to slot i), so it
    /// delivers at once; both sets of samples arrive.
    @Test func aNewPublisherDoesNotWaitForADepartedOnesBlock() throws {
        let node = try Node(name: "unit")
        let service = try node.publishSubscribe(TestSupport.uniqueName("slots"), of: Reading.self,
                                                config: .init(maxPublishers: 2, subscriberBufferSize: 8))
        let subscriber = try service.subscriber()
        func publish(_ id: Double) throws {
            let publisher = try service.publisher()
            for i in 1...3 { #expect(try publisher.send(copyOf: Reading(sequence: UInt64(i), value: id)) == 1) }
        }
        try publish(1)
        try publish(2)
        var got: [Double: [UInt64]] = [:]
        while let sample = try subscriber.tryReceive() { got[sample.payload.value, default: []].append(sample.payload.sequence) }
        #expect(got == [1: [1, 2, 3], 2: [1, 2, 3]])
        try publish(3) // both blocks recycled: either slot will do
        while let sample = try subscriber.tryReceive() { got[sample.payload.value, default: []].append(sample.payload.sequence) }
        #expect(got[3] == [1, 2, 3])
    }

    /// The pool's name goes at once when every subscriber had mapped it.
    @Test func aDroppedPublisherWhoseSubscribersAttachedLeavesNothing() throws {
        let node = try Node(name: "unit")
        let name = TestSupport.uniqueName("dropmapped")
        let service = try node.publishSubscribe(name, of: Reading.self)
        let subscriber = try service.subscriber()
        var publisher: Publisher<Reading>? = try service.publisher()
        let poolName = try SegmentName("svc.\(name).p\(String(try #require(publisher).portID, radix: 16))")
        try #require(publisher).send(copyOf: Reading(sequence: 1, value: 0))
        #expect(try subscriber.tryReceive()?.payload.sequence == 1) // maps the pool
        try #require(publisher).send(copyOf: Reading(sequence: 2, value: 0))
        publisher = nil
        #expect(!SharedMemorySegment.exists(poolName))
        #expect(try subscriber.tryReceive()?.payload.sequence == 2)
        #expect(try subscriber.tryReceive() == nil)
    }

    @Test func historyReachesLateJoiners() throws {
        let node = try Node(name: "unit")
        let service = try node.publishSubscribe(TestSupport.uniqueName("hist"), of: Reading.self,
                                                config: .init(subscriberBufferSize: 8, historySize: 3))
        let publisher = try service.publisher()
        for i in 1...5 { try publisher.send(copyOf: Reading(sequence: UInt64(i), value: 0)) }
        let late = try service.subscriber()
        try publisher.send(copyOf: Reading(sequence: 6, value: 0)) // connects (and replays) on the next send
        var got: [UInt64] = []
        while let sample = try late.tryReceive() { got.append(sample.payload.sequence) }
        #expect(got == [3, 4, 5, 6])
    }

    @Test func overflowPolicies() throws {
        let node = try Node(name: "unit")
        for policy in [OverflowPolicy.overwriteOldest, .discard, .block] {
            let service = try node.publishSubscribe(TestSupport.uniqueName("ovf"), of: Reading.self,
                                                    config: .init(subscriberBufferSize: 4, overflow: policy))
            let subscriber = try service.subscriber()
            let publisher = try service.publisher()
            publisher.sendTimeout = .milliseconds(20)
            for i in 1...10 { try publisher.send(copyOf: Reading(sequence: UInt64(i), value: 0)) }
            var got: [UInt64] = []
            while let sample = try subscriber.tryReceive() { got.append(sample.payload.sequence) }
            switch policy {
            case .overwriteOldest: #expect(got == [7, 8, 9, 10])
            case .discard, .block: #expect(got == [1, 2, 3, 4])
            }
            #expect(subscriber.lostSamples == 6, "\(policy)")
        }
    }

    /// Back-pressure uses the waiting engine: a `.block` publisher facing a
    /// full queue sleeps on that subscriber's space parker (it polled with
    /// sleeps of 1–20 µs before) and the subscriber's pop wakes it.
    @Test func aBlockedPublisherSleepsUntilTheSubscriberMakesRoom() throws {
        let node = try Node(name: "unit")
        let service = try node.publishSubscribe(TestSupport.uniqueName("backpressure"), of: Reading.self,
                                                config: .init(subscriberBufferSize: 2, overflow: .block))
        let subscriber = try service.subscriber()
        let publisher = try service.publisher(sendTimeout: .seconds(20), waitStrategy: .block)
        for i in 1...2 { try publisher.send(copyOf: Reading(sequence: UInt64(i), value: 0)) }
        let space = subscriber.port.inbox.spaceParker(of: publisher.port.slotIndex)
        let wakesBefore = space.seq.pointee.load(ordering: .relaxed)
        let reached = Locked(-1)
        let sender = TestThread { reached.set((try? publisher.send(copyOf: Reading(sequence: 3, value: 0))) ?? -2) }
        let deadline = monotonicNanoseconds() + 10_000_000_000
        while space.sleeperCount == 0 && monotonicNanoseconds() < deadline { usleep(200) }
        #expect(space.sleeperCount == 1, "the publisher should sleep on the subscriber's space parker")
        #expect(reached.value == -1, "the send should still wait: the queue is full")
        #expect(try subscriber.receive(timeout: .seconds(1)).payload.sequence == 1)
        sender.join()
        #expect(reached.value == 1)
        #expect(space.seq.pointee.load(ordering: .relaxed) != wakesBefore, "the subscriber's pop should have woken it")
        #expect(try subscriber.receive(timeout: .seconds(1)).payload.sequence == 2)
        #expect(try subscriber.receive(timeout: .seconds(1)).payload.sequence == 3)
        #expect(subscriber.lostSamples == 0)
    }

    @Test func borrowLimitAndPoolReuse() throws {
        let node = try Node(name: "unit")
        let service = try node.publishSubscribe(TestSupport.uniqueName("borrow"), of: Reading.self,
                                                config: .init(maxSubscribers: 1, subscriberBufferSize: 4, maxLoans: 2, maxBorrowed: 2))
        let subscriber = try service.subscriber()
        let publisher = try service.publisher()
        // Many more samples than the pool has chunks: released ones come back.
        for i in 0..<10_000 {
            try publisher.send(copyOf: Reading(sequence: UInt64(i), value: 0))
            #expect(try unwrap(try subscriber.tryReceive()).payload.sequence == UInt64(i))
        }
        try publisher.send(copyOf: Reading(sequence: 1, value: 0))
        try publisher.send(copyOf: Reading(sequence: 2, value: 0))
        try publisher.send(copyOf: Reading(sequence: 3, value: 0))
        let a = try unwrap(try subscriber.tryReceive())
        let b = try unwrap(try subscriber.tryReceive())
        #expect(throws: ServiceError.tooManyBorrowed(maximum: 2)) { _ = try subscriber.tryReceive() }
        a.release()
        b.release()
        let l1 = try publisher.loanUninitialized(), l2 = try publisher.loanUninitialized()
        #expect(throws: ServiceError.tooManyLoans(maximum: 2)) { _ = try publisher.loanUninitialized() }
        try l1.assumeInitialized().send()
        _ = l2
    }

    @Test func incompatibleOpenNamesTheDifferences() throws {
        let node = try Node(name: "unit")
        let name = TestSupport.uniqueName("compat")
        let service = try node.publishSubscribe(name, of: Reading.self, config: .init(maxSubscribers: 2))
        let error = #expect(throws: ServiceError.self) {
            try node.publishSubscribe(name, of: UInt32.self, config: .init(maxSubscribers: 3))
        }
        guard case .incompatible(_, let differences) = error else { Issue.record("got \(String(describing: error))"); return }
        #expect(differences.contains { $0.contains("payload type") && $0.contains("UInt32") })
        #expect(differences.contains { $0.contains("max subscribers: requested 3, service has 2") })
        #expect(throws: ServiceError.alreadyExists(service: name)) { try node.publishSubscribe(name, of: Reading.self, config: .init(maxSubscribers: 2), mode: .create) }
        let missing = TestSupport.uniqueName("none")
        #expect(throws: ServiceError.notFound(service: missing)) {
            try node.publishSubscribe(missing, of: Reading.self, mode: .open)
        }
        _ = service
    }

    @Test func tooManyPortsIsAnError() throws {
        let node = try Node(name: "unit")
        let service = try node.publishSubscribe(TestSupport.uniqueName("ports"), of: Reading.self,
                                                config: .init(maxPublishers: 1, maxSubscribers: 1))
        let p = try service.publisher(), s = try service.subscriber()
        #expect(throws: ServiceError.tooManyPorts(service: service.name, kind: "publisher", maximum: 1)) { _ = try service.publisher() }
        #expect(throws: ServiceError.tooManyPorts(service: service.name, kind: "subscriber", maximum: 1)) { _ = try service.subscriber() }
        _ = (p, s)
    }

    @Test func serviceSegmentsGoAwayWithTheLastUser() throws {
        let name = TestSupport.uniqueName("life")
        do {
            let node = try Node(name: "unit")
            let service = try node.publishSubscribe(name, of: Reading.self)
            let publisher = try service.publisher()
            let subscriber = try service.subscriber()
            try publisher.send(copyOf: Reading(sequence: 1, value: 1))
            #expect(ServiceDirectory.serviceNames().contains(name))
            _ = try subscriber.tryReceive()
        }
        #expect(!ServiceDirectory.serviceNames().contains(name))
        #expect(!SegmentDirectory.list().contains { $0.name.name.hasPrefix("svc.\(name)") })
    }

    /// A subscriber's queue holds at most the configured buffer size even
    /// when its power-of-two capacity is larger; the pool is sized by the
    /// buffer size, so a queue filled past it starved the publisher
    /// (`poolExhausted` on loan under every policy; found streaming 1080p
    /// frames with a buffer of 43). Every policy, sizes 1…43, the subscriber
    /// holding as many samples as it may borrow and reading nothing else.
    @Test(arguments: [OverflowPolicy.overwriteOldest, .discard, .block])
    func aSlowSubscriberNeverStarvesThePool(policy: OverflowPolicy) throws {
        let node = try Node(name: "unit")
        for buffer in [1, 3, 5, 6, 43] {
            let borrowed = 2
            let service = try node.publishSubscribe(TestSupport.uniqueName("starve"), of: UInt64.self,
                                                    config: .init(maxPublishers: 1, maxSubscribers: 1, subscriberBufferSize: buffer,
                                                                  historySize: 0, maxLoans: 1, maxBorrowed: borrowed, overflow: policy))
            let publisher = try service.publisher(), subscriber = try service.subscriber()
            publisher.sendTimeout = .milliseconds(2)
            var sent: UInt64 = 0
            func send() throws { sent += 1; _ = try publisher.send(copyOf: sent) }
            try send()
            let first = try unwrap(try subscriber.tryReceive())
            try send()
            let second = try unwrap(try subscriber.tryReceive())
            // Three times the buffer more: every loan must succeed.
            for _ in 0..<(3 * buffer + 4) { try send() }
            #expect(first.payload == 1 && second.payload == 2)
            first.release()
            second.release()
            var queued: [UInt64] = []
            while let sample = try subscriber.tryReceive() { queued.append(sample.payload) }
            #expect(queued.count == buffer, "buffer \(buffer), \(policy)")
            let newest = Array((sent - UInt64(buffer) + 1)...sent), oldest = Array(UInt64(borrowed + 1)...UInt64(borrowed + buffer))
            #expect(queued == (policy == .overwriteOldest ? newest : oldest), "buffer \(buffer), \(policy)")
            #expect(subscriber.lostSamples == sent - UInt64(borrowed + buffer))
        }
    }
}
