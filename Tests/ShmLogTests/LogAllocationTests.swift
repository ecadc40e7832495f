import Testing
import CShmTestSupport
import ShmTestSupport
@testable import ShmLog

@Suite("Log append allocates nothing")
struct LogAllocationTests {
    /// Appends in the steady state (within a segment, no sync) allocate nothing.
    @Test func appendsAllocateNothing() throws {
        let scratch = ScratchLog("alloc")
        let log = try scratch.create(segmentSize: 16 << 20)
        let appender = try log.appender()
        let record = UnsafeMutableRawBufferPointer.allocate(byteCount: 40, alignment: 8)
        defer { record.deallocate() }
        record.initializeMemory(as: UInt8.self, repeating: 7)
        for _ in 0..<1_000 { try appender.append(UnsafeRawBufferPointer(record)) }
        let before = cshm_test_thread_allocations()
        for i in 0..<20_000 {
            record.storeBytes(of: UInt64(i), as: UInt64.self)
            try appender.append(UnsafeRawBufferPointer(record))
        }
        let allocations = cshm_test_thread_allocations() - before
        #expect(allocations == 0, "20,000 appends allocated \(allocations) times")
    }
}
