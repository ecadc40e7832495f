// Names used before one public name per concept (round 2). Each structure
// now has one type whether it lives in its own named segment
// (`MessageRing.create`) or in memory the caller lays out
// (`MessageRing(attaching:)`).

@available(*, deprecated, renamed: "MessageRing")
public typealias SPSCRing = MessageRing
@available(*, deprecated, renamed: "MessageQueue")
public typealias MPMCQueue = MessageQueue
@available(*, deprecated, renamed: "SharedMutex")
public typealias RobustMutex = SharedMutex
@available(*, deprecated, renamed: "SharedEvent")
public typealias FutexEvent = SharedEvent
@available(*, deprecated, renamed: "SharedSemaphore")
public typealias FutexSemaphore = SharedSemaphore

// MessageQueue spoke enqueue/dequeue while every other structure says
// send/receive (DESIGN, Vocabulary); per-call wait strategies gave way to
// one per handle.
extension MessageQueue {
    @available(*, deprecated, renamed: "trySend(_:)")
    public func tryEnqueue(_ bytes: UnsafeRawBufferPointer) throws(QueueError) -> Bool { try trySend(bytes) }
    @available(*, deprecated, renamed: "trySend(_:)")
    public func tryEnqueue(_ bytes: [UInt8]) throws(QueueError) -> Bool { try trySend(bytes) }
    @available(*, deprecated, renamed: "send(_:timeout:)")
    public func enqueue(_ bytes: UnsafeRawBufferPointer, timeout: Duration? = nil) throws(QueueError) { try send(bytes, timeout: timeout) }
    @available(*, deprecated, renamed: "send(_:timeout:)")
    public func enqueue(_ bytes: [UInt8], timeout: Duration? = nil) throws(QueueError) { try send(bytes, timeout: timeout) }
    @available(*, deprecated, renamed: "send(value:timeout:)")
    public func enqueue<T: BitwiseCopyable>(value: T, timeout: Duration? = nil) throws(QueueError) { try send(value: value, timeout: timeout) }
    @available(*, deprecated, message: "send(_:timeout:); the wait strategy is set per handle: MessageQueue.create/open/init(…, waitStrategy:)")
    public func enqueue(_ bytes: UnsafeRawBufferPointer, timeout: Duration? = nil, strategy: WaitStrategy) throws(QueueError) {
        var waiter = Waiter(strategy)
        try send(bytes, timeout: timeout, waiter: &waiter)
    }
    @available(*, deprecated, renamed: "tryReceive(into:)")
    public func tryDequeue(into buffer: UnsafeMutableRawBufferPointer) throws(QueueError) -> Int? { try tryReceive(into: buffer) }
    @available(*, deprecated, renamed: "receive(into:timeout:)")
    public func dequeue(into buffer: UnsafeMutableRawBufferPointer, timeout: Duration? = nil) throws(QueueError) -> Int {
        try receive(into: buffer, timeout: timeout)
    }
    @available(*, deprecated, message: "receive(into:timeout:); the wait strategy is set per handle: MessageQueue.create/open/init(…, waitStrategy:)")
    public func dequeue(into buffer: UnsafeMutableRawBufferPointer, timeout: Duration? = nil, strategy: WaitStrategy) throws(QueueError) -> Int {
        var waiter = Waiter(strategy)
        return try receive(into: buffer, timeout: timeout, waiter: &waiter)
    }
    @available(*, deprecated, renamed: "receive(timeout:)")
    public func dequeue(timeout: Duration? = nil) throws(QueueError) -> [UInt8] { try receive(timeout: timeout) }
    @available(*, deprecated, renamed: "receive(_:timeout:)")
    public func dequeue<T: BitwiseCopyable>(_ type: T.Type, timeout: Duration? = nil) throws(QueueError) -> T { try receive(type, timeout: timeout) }
    @available(*, deprecated, renamed: "receive(timeout:)")
    public func dequeue(timeout: Duration? = nil) async throws -> [UInt8] { try await receive(timeout: timeout) }
    @available(*, deprecated, renamed: "send(_:timeout:)")
    public func enqueue(_ bytes: [UInt8], timeout: Duration? = nil) async throws { try await send(bytes, timeout: timeout) }
}
