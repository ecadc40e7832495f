import Testing
import CShmTestSupport
import ShmTestSupport
import ShmSystem
#if canImport(Glibc)
import Glibc
#endif
@testable import Shm

/// The steady state of the service hot paths allocates nothing (contract
/// item 7): counted with an interposed `malloc` on the calling thread.
@Suite("Steady state allocates nothing")
struct SteadyStateAllocationTests {
    /// Reserved, and growing (from one chunk of 64 bytes: the warm-up grows
    /// it in chunks and in chunk size; once grown, nothing).
    @Test(arguments: [PoolAllocation.reserved, .growing(initialChunks: 1)])
    func publishSubscribeLoanSendReceiveRelease(allocation: PoolAllocation) throws {
        let node = try Node(name: "unit")
        let service = try node.publishSubscribe(TestSupport.uniqueName("alloc"), slicesOf: UInt8.self, maxLength: 256,
                                                config: .init(maxPublishers: 1, maxSubscribers: 1, subscriberBufferSize: 4))
        let publisher = try service.publisher(allocation: allocation), subscriber = try service.subscriber()
        func round(_ i: Int) throws {
            let loan = try publisher.loanUninitialized(count: 1 + i % 256)
            UnsafeMutableRawPointer(loan.unsafeBuffer.baseAddress!).storeBytes(of: UInt8(truncatingIfNeeded: i), as: UInt8.self)
            _ = try loan.assumeInitialized().send()
            guard let sample = try subscriber.tryReceive() else { throw TestFailure("sample \(i) missing") }
            if sample.unsafeBytes.count != 1 + i % 256 { throw TestFailure("sample \(i): \(sample.unsafeBytes.count) bytes") }
        }
        for i in 0..<1_000 { try round(i) }
        let before = cshm_test_thread_allocations()
        for i in 0..<20_000 { try round(i) }
        let allocations = cshm_test_thread_allocations() - before
        #expect(allocations == 0, "publish/subscribe allocated \(allocations) times in 20,000 rounds")
    }

    @Test func requestResponseRoundTrip() throws {
        let node = try Node(name: "unit")
        let service = try node.requestResponse(TestSupport.uniqueName("allocrr"), request: UInt64.self, response: UInt64.self)
        let client = try service.client(), server = try service.server()
        func round(_ i: Int) throws {
            let pending = try client.send(UInt64(i))
            guard let request = try server.tryReceive() else { throw TestFailure("request \(i) missing") }
            try request.respond(request.request &+ 1)
            if try pending.response(timeout: .seconds(1)) != UInt64(i) &+ 1 { throw TestFailure("response \(i)") }
        }
        for i in 0..<1_000 { try round(i) }
        let before = cshm_test_thread_allocations()
        for i in 0..<20_000 { try round(i) }
        let allocations = cshm_test_thread_allocations() - before
        #expect(allocations == 0, "request/response allocated \(allocations) times in 20,000 round trips")
    }

    /// The zero-copy calls: loan, write in place, send; receive in place,
    /// loan the response, send; read the response in place, drop.
    @Test func requestResponseRoundTripWithLoans() throws {
        let node = try Node(name: "unit")
        let service = try node.requestResponse(TestSupport.uniqueName("allocrrz"), request: UInt64.self, response: UInt64.self)
        let client = try service.client(), server = try service.server()
        func round(_ i: Int) throws {
            let pending = try client.loanUninitialized().write(UInt64(i)).send()
            guard let request = try server.tryReceiveInPlace() else { throw TestFailure("request \(i) missing") }
            try request.loanResponse().write(request.payload &+ 1).send()
            if try pending.receive(timeout: .seconds(1)).payload != UInt64(i) &+ 1 { throw TestFailure("response \(i)") }
        }
        for i in 0..<1_000 { try round(i) }
        let before = cshm_test_thread_allocations()
        for i in 0..<20_000 { try round(i) }
        let allocations = cshm_test_thread_allocations() - before
        #expect(allocations == 0, "zero-copy request/response allocated \(allocations) times in 20,000 round trips")
    }
}

/// The steady state makes no syscall either (contract item 7): a peer runs
/// pub/sub samples and request/response exchanges (loans and copies) in one
/// thread between two `getppid()` markers under strace; nothing else of
/// that thread may appear between them (no futex wake: nobody sleeps).
@Suite("Steady state makes no syscall")
struct SteadyStateSyscallTests {
    @Test func publishSubscribeAndRequestResponseMakeNoSyscall() throws {
        guard access("/usr/bin/strace", X_OK) == 0 else {
            print("skipped publishSubscribeAndRequestResponseMakeNoSyscall: no /usr/bin/strace (apt-get install strace)")
            return
        }
        let name = TestSupport.uniqueName("steady")
        let trace = "/tmp/\(name).trace"
        defer { unlink(trace) }
        let peer = try ChildProcess.spawn("/usr/bin/strace", arguments: ["-f", "-qq", "-o", trace, TestSupport.peerPath,
                                                                          "steady-syscalls", name, "5000"], captureOutput: true)
        #expect(try peer.wait(timeout: .seconds(120)) == .exited(0), "\(peer.errorText)")
        #expect(peer.outputText.contains("steady 5000"), "\(peer.outputText)")
        let lines = try #require(readSmallFile(trace, limit: 1 << 26)).split(separator: "\n").map(String.init)
        let markers = lines.enumerated().filter { $0.element.contains("getppid(") }
        try #require(markers.count == 2, "\(markers.map(\.element))")
        let thread = markers[0].element.prefix { $0 != " " }
        let between = lines[(markers[0].offset + 1)..<markers[1].offset].filter { $0.hasPrefix(thread + " ") }
        #expect(between.isEmpty, "syscalls in the steady state: \(between.prefix(10))")
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
