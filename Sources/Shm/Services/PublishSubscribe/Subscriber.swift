import ShmSystem
@_spi(ShmInternals) import ShmPrimitives

/// Receives samples from every publisher of a service, in place.
///
/// ```swift
/// while let sample = try subscriber.tryReceive() { use(sample.payload) }   // dropped → handed back
/// let next = try subscriber.receive(timeout: .seconds(1))
/// ```
///
/// The subscriber owns an inbox segment (`svc.<service>.s<id>`) with one
/// block per publisher slot: a delivery queue of sample references and a
/// return queue for released ones. It maps each publisher's pool read-only
/// (`mmap` with `PROT_READ`) and reads samples where they are. Waiting is
/// by the wait strategy: spinning, then `FUTEX_WAIT` on the inbox's parker.
///
/// Use a subscriber, and the samples it hands out, from one thread at a
/// time: samples refer to their port without atomic reference counting.
/// The receive calls are `@inlinable`: specialized where they are called
/// (the element count is a division by a constant), over the non-generic
/// `SubscriberPort`.
public final class Subscriber<Payload: BitwiseCopyable>: @unchecked Sendable {
    public let service: PublishSubscribeService<Payload>
    @usableFromInline let port: SubscriberPort

    /// This port's identifier in the service.
    public var portID: UInt64 { port.portID }

    init(service: PublishSubscribeService<Payload>, waitStrategy: WaitStrategy) throws(ServiceError) {
        self.service = service
        port = try SubscriberPort(attachment: service.attachment, config: service.config,
                                  deliveryCapacity: service.deliveryCapacity, returnCapacity: service.returnCapacity,
                                  elementStride: MemoryLayout<Payload>.stride,
                                  minimumBytes: service.maxSliceLength == 1 ? MemoryLayout<Payload>.size : 0,
                                  waitStrategy: waitStrategy)
    }

    /// Samples still borrowed keep this subscriber's port registered (so
    /// publishers do not reuse their chunks) until they are dropped.
    deinit { port.retire() }

    /// The next sample from any publisher, or nil if none is waiting.
    ///
    /// Never waits. - Throws: `.tooManyBorrowed` if this subscriber already holds
    ///   `maxBorrowed` samples; `.corrupt` for a reference that points
    ///   outside its publisher's pool (that sample is skipped).
    @inlinable
    public func tryReceive() throws(ServiceError) -> ReceivedSample<Payload>? {
        guard let delivery = try port.tryReceive() else { return nil }
        return ReceivedSample(delivery: delivery, count: delivery.bytes / MemoryLayout<Payload>.stride)
    }

    /// Waits for the next sample with the wait strategy, at most `timeout`
    /// (nil, the default: for ever — samples come at their publisher's pace).
    ///
    /// - Throws: `.timedOut(Duration)`; `.tooManyBorrowed`, `.corrupt` as
    ///   `tryReceive`; an attach failure when samples wait in a pool this
    ///   subscriber cannot map.
    @inlinable
    public func receive(timeout: Duration? = nil) throws(ServiceError) -> ReceivedSample<Payload> {
        let delivery = try port.receive(timeout: timeout)
        return ReceivedSample(delivery: delivery, count: delivery.bytes / MemoryLayout<Payload>.stride)
    }

    /// Samples received and not yet dropped.
    public var borrowedSamples: Int { port.local.pointee.borrowed }

    /// Samples waiting in this subscriber's queues.
    public var backlog: Int { port.backlog }

    /// Samples the overflow policy dropped before this subscriber saw them.
    public var lostSamples: UInt64 { port.lostSamples }

    /// Samples this subscriber found damaged and skipped.
    public var corruptSamples: Int { port.local.pointee.corruptSamples }

    /// Publishers this subscriber receives from now.
    public var connectedPublishers: Int { port.active.count }

    /// Test hook: takes every waiting sample reference and never gives it
    /// back, as a buggy or hostile subscriber would. Returns how many.
    package func leakForTesting() -> Int { port.leakForTesting() }
}
