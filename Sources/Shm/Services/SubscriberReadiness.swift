import Synchronization
import ShmSystem
import ShmPrimitives

/// A file descriptor that becomes readable when a subscriber may have
/// samples waiting, for programs that wait in their own event loop (epoll,
/// `poll`, Python's asyncio) — the C ABI's `shm_subscriber_fd`.
///
/// A helper thread (from `BlockingPool`, asleep in `FUTEX_WAIT` almost all
/// the time: not a busy thread) sleeps on the subscriber inbox's parker,
/// where publishers wake it, and signals an `eventfd`. The owner then drains
/// the subscriber (`tryReceive` until nil) and calls `rearm()`; the helper
/// looks again and signals at once if more arrived meanwhile.
///
/// The helper only reads shared memory (the delivery queues' tags and the
/// inbox epoch); receiving stays with the subscriber's thread.
///
/// ```text
/// state word: 0 armed (helper watching), 1 signalled (waiting for rearm), 2 stopping
/// ```
public final class SubscriberReadiness: @unchecked Sendable {
    private let descriptor: EventDescriptor
    private let shared: Shared

    /// The readable-when-ready descriptor (owned: do not close it).
    public var fileDescriptor: Int32 { descriptor.fileDescriptor }

    /// What the helper thread keeps alive for as long as it runs.
    final class Shared: @unchecked Sendable {
        let state = UnsafeMutablePointer<Atomic<UInt32>>.allocate(capacity: 1)
        let inboxSegment: SharedMemorySegment
        let inbox: SubscriberInbox
        let descriptor: EventDescriptor
        init(inboxSegment: SharedMemorySegment, inbox: SubscriberInbox, descriptor: EventDescriptor) {
            self.inboxSegment = inboxSegment
            self.inbox = inbox
            self.descriptor = descriptor
            state.initialize(to: Atomic(0))
        }
        deinit { state.deallocate() }
    }

    init(port: SubscriberPort) throws(ServiceError) {
        guard let descriptor = EventDescriptor() else {
            throw .segment(.system(operation: "eventfd", name: port.serviceName, Errno.current))
        }
        self.descriptor = descriptor
        let shared = Shared(inboxSegment: port.inboxSegment, inbox: port.inbox, descriptor: descriptor)
        self.shared = shared
        BlockingPool.shared.submit { SubscriberReadiness.watch(shared) }
    }

    deinit {
        // SYNC POINT: release pairs with the helper's acquire load of the state.
        shared.state.pointee.store(2, ordering: .releasing)
        _ = Futex.wake(UnsafeMutableRawPointer(shared.state), count: 1)
        shared.inbox.parker.wake(count: Int32.max) // ends its sleep now rather than in ≤ 100 ms
    }

    /// Consumes the descriptor's readiness after draining the subscriber;
    /// the helper watches again (and signals at once if samples came).
    public func rearm() {
        descriptor.drain()
        // SYNC POINT: release pairs with the helper's acquire load of the state.
        if shared.state.pointee.compareExchange(expected: 1, desired: 0, ordering: .acquiringAndReleasing).exchanged {
            _ = Futex.wake(UnsafeMutableRawPointer(shared.state), count: 1)
        }
    }

    private static func watch(_ shared: Shared) {
        let inbox = shared.inbox
        var seenEpoch = inbox.epoch.pointee.load(ordering: .sequentiallyConsistent)
        func ready() -> Bool {
            // SYNC POINT (Dekker with the publishers' seq_cst publish, via the parker).
            if inbox.epoch.pointee.load(ordering: .sequentiallyConsistent) != seenEpoch { return true }
            for block in 0..<inbox.maxPublishers {
                if let queue = try? IndexQueue(attaching: inbox.deliveryRegion(block)), queue.hasValue { return true }
            }
            return false
        }
        while true {
            // SYNC POINT: acquire pairs with the release stores in `deinit`/`rearm`.
            let state = shared.state.pointee.load(ordering: .acquiring)
            if state == 2 { return }
            let slice = monotonicNanoseconds() &+ 100_000_000
            if state == 1 {
                _ = Futex.wait(UnsafeMutableRawPointer(shared.state), expected: 1, deadline: slice)
                continue
            }
            if ready() || inbox.parker.sleep(until: slice, ready: ready) {
                seenEpoch = inbox.epoch.pointee.load(ordering: .sequentiallyConsistent)
                if shared.state.pointee.compareExchange(expected: 0, desired: 1, ordering: .acquiringAndReleasing).exchanged {
                    shared.descriptor.signal()
                }
            }
        }
    }
}

extension Subscriber {
    /// A descriptor that becomes readable when samples may be waiting (see
    /// `SubscriberReadiness`). Keep the returned object as long as the
    /// descriptor is used; one per subscriber is enough.
    public func makeReadiness() throws(ServiceError) -> SubscriberReadiness {
        try SubscriberReadiness(port: port)
    }
}
