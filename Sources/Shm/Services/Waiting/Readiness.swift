import Synchronization
import ShmSystem
import SystemPackage
@_spi(ShmInternals) import ShmPrimitives

/// A file descriptor that becomes readable when a subscriber, or any
/// attachment of a wait set, may be ready — for programs that wait in their
/// own event loop (epoll, `poll`, Python's asyncio). The C ABI's
/// `shm_subscriber_fd` and `shm_waitset_fd`.
///
/// A helper thread (from `BlockingPool`; asleep in one `futex_waitv(2)` on
/// every watched parker almost all the time: not a busy thread) announces
/// itself as a sleeper on each parker, re-checks each watch's read-only
/// condition, sleeps, and signals an `eventfd` when one holds. The owner
/// then drains what it watches (`tryReceive` until nil, the wait set's
/// `ready()`, …) and calls `rearm()`; the helper looks again and signals at
/// once if more arrived meanwhile (level-triggered, like the wait set).
///
/// The helper only reads shared memory (delivery queue tags, inbox epochs,
/// event counters, the request queue's head); everything that receives or
/// changes a port stays on the owner's thread, where `rearm()` also takes
/// each watch's baseline (the events a listener has already seen).
///
/// ```text
/// state word: 0 armed (helper watching), 1 signalled (waiting for rearm), 2 stopping
/// ```
public final class Readiness: @unchecked Sendable {
    /// One condition the helper watches: the parker its wakers bump, a
    /// read-only test safe from any thread, and what keeps their memory mapped.
    package struct Watch: @unchecked Sendable {
        let parker: Parker
        let isReady: @Sendable () -> Bool
        let keepAlive: AnyObject
        package init(parker: Parker, keepAlive: AnyObject, isReady: @escaping @Sendable () -> Bool) {
            self.parker = parker
            self.keepAlive = keepAlive
            self.isReady = isReady
        }
    }

    private let eventDescriptor: EventDescriptor
    private let shared: Shared
    /// Builds the watches from the owner's state; called on the owner's thread.
    private let makeWatches: () -> [Watch]

    /// The readable-when-ready descriptor (owned: do not close it).
    public var fileDescriptor: Int32 { eventDescriptor.fileDescriptor }

    /// The same descriptor as swift-system's `FileDescriptor` (owned: do not close it).
    public var descriptor: FileDescriptor { eventDescriptor.descriptor }

    @available(*, deprecated, renamed: "descriptor")
    public var systemDescriptor: FileDescriptor { descriptor }

    /// What the helper thread keeps alive for as long as it runs.
    final class Shared: @unchecked Sendable {
        let state = ReadinessState()
        let watches: Mutex<[Watch]>
        let descriptor: EventDescriptor
        init(watches: [Watch], descriptor: EventDescriptor) {
            self.watches = Mutex(watches)
            self.descriptor = descriptor
        }
    }

    /// - Parameter makeWatches: called now and on every `rearm()`, on the owner's thread.
    package init(name: String, makeWatches: @escaping () -> [Watch]) throws(ServiceError) {
        guard let descriptor = EventDescriptor() else {
            throw .segment(.system(operation: "eventfd", name: name, Errno.current))
        }
        let watches = makeWatches()
        guard watches.count < 128 else { throw .invalidConfiguration("at most 127 watched attachments per descriptor") }
        self.eventDescriptor = descriptor
        self.makeWatches = makeWatches
        let shared = Shared(watches: watches, descriptor: descriptor)
        self.shared = shared
        BlockingPool.shared.submit { Readiness.watch(shared) }
    }

    deinit { shared.state.stop() }

    /// Consumes the descriptor's readiness after draining what it watches;
    /// the helper watches again (and signals at once if anything is ready).
    /// Also takes in attachments added to a wait set since the last call.
    public func rearm() {
        eventDescriptor.drain()
        let watches = makeWatches()
        shared.watches.withLock { $0 = watches.count < 128 ? watches : Array(watches.prefix(127)) }
        shared.state.rearm()
    }

    private static func watch(_ shared: Shared) {
        while true {
            let state = shared.state.state
            if state == .stopping { return }
            let slice = monotonicNanoseconds() &+ 100_000_000
            if state == .signalled {
                shared.state.sleepWhileSignalled(until: slice)
                continue
            }
            let watches = shared.watches.withLock { $0 }
            let ready = ParkerSet.wait(on: watches.map(\.parker), also: shared.state.whileArmed, until: slice, pollInterval: 1_000_000) {
                watches.contains { $0.isReady() } ? true : nil
            }
            if ready == true, shared.state.signal() { shared.descriptor.signal() }
        }
    }
}

extension Subscriber {
    /// A descriptor that becomes readable when samples may be waiting (see
    /// `Readiness`): drain with `tryReceive()` until nil, then `rearm()`.
    /// Keep the returned object as long as the descriptor is used; one per
    /// subscriber is enough.
    public func makeReadiness() throws(ServiceError) -> Readiness {
        let port = self.port
        return try Readiness(name: port.serviceName) { [port.readOnlyWatch()] }
    }
}

extension SubscriberPort {
    /// Ready when a delivery queue holds a sample or a publisher connected
    /// since this call; reads only shared memory.
    func readOnlyWatch() -> Readiness.Watch {
        let inbox = self.inbox
        // Dekker with the publishers' seq_cst publish, via the parker.
        let seenEpoch = inbox.epoch.currentBeforeSleeping()
        return Readiness.Watch(parker: inbox.parker, keepAlive: inboxSegment) {
            if inbox.epoch.currentBeforeSleeping() != seenEpoch { return true }
            for block in 0..<inbox.maxPublishers {
                if let queue = try? IndexQueue(attaching: inbox.deliveryRegion(block)), queue.hasValue { return true }
            }
            return false
        }
    }
}
