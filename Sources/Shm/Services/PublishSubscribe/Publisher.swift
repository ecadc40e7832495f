import ShmSystem
@_spi(ShmInternals) import ShmPrimitives

/// Sends samples on a publish/subscribe service without copying them.
///
/// ```swift
/// let sample = try publisher.loanUninitialized().write(Reading(t: now, x: 1.5))
/// try sample.send()
/// ```
///
/// The publisher owns a pool of samples in segments of its own
/// (`svc.<service>.p<id>`, and `…-<k>` for those a growing pool adds;
/// each created with `shm_open` + `ftruncate` + `fallocate`, mapped with
/// `mmap`; see `PoolAllocation`). A send pushes the sample's reference into
/// every subscriber's queue; nothing is copied.
///
/// Use a publisher, and the samples it loans, from one thread at a time:
/// samples refer to their port without atomic reference counting.
public final class Publisher<Payload: BitwiseCopyable>: @unchecked Sendable {
    public let service: PublishSubscribeService<Payload>
    @usableFromInline let port: PublisherPort

    /// This port's identifier in the service.
    public var portID: UInt64 { port.portID }

    /// How long a send waits for room under the `.block` overflow policy
    /// (nil: for ever), per subscriber; then the sample is counted lost for
    /// that subscriber. Bounded (1 s) by default, unlike other waits for data
    /// at a peer's pace: one stalled or dead subscriber would otherwise stop
    /// delivery to every other.
    public var sendTimeout: Duration? {
        get { port.sendTimeout }
        set { port.sendTimeout = newValue }
    }

    init(service: PublishSubscribeService<Payload>, allocation: PoolAllocation) throws(ServiceError) {
        self.service = service
        port = try PublisherPort(attachment: service.attachment, config: service.config, payloadType: service.payloadType,
                                 elementStride: MemoryLayout<Payload>.stride, allocation: allocation)
    }

    deinit { port.retire() }

    /// Loans an uninitialized sample for one `Payload` value.
    @inlinable
    public func loanUninitialized() throws(ServiceError) -> UninitializedSample<Payload> {
        UninitializedSample(port: .passUnretained(port), chunk: try port.takeChunk(bytes: MemoryLayout<Payload>.stride), count: 1)
    }

    /// Loans an uninitialized sample for `count` elements (slice services).
    /// - Throws: `.payloadTooLarge` past the service's maximum length;
    ///   `.tooManyLoans`; `.poolExhausted`; and, when a growing pool must add
    ///   a segment for this loan (`shm_open`, `ftruncate`, `posix_fallocate`,
    ///   `mmap`), `.segment(.insufficientSpace…)` if /dev/shm is full.
    @inlinable
    public func loanUninitialized(count: Int) throws(ServiceError) -> UninitializedSample<Payload> {
        guard count >= 0, count <= service.maxSliceLength else {
            throw .payloadTooLarge(size: count * MemoryLayout<Payload>.stride, maximum: service.payloadType.size)
        }
        return UninitializedSample(port: .passUnretained(port), chunk: try port.takeChunk(bytes: count * MemoryLayout<Payload>.stride),
                                   count: count)
    }

    /// Copies `value` into a loaned sample and sends it; returns how many
    /// subscribers it reached.
    @discardableResult @inlinable
    public func send(copyOf value: Payload) throws(ServiceError) -> Int {
        try loanUninitialized().write(value).send()
    }

    /// Copies `elements` into a loaned slice sample and sends it.
    @discardableResult @inlinable
    public func send(copyOf elements: some Collection<Payload>) throws(ServiceError) -> Int {
        let sample = try loanUninitialized(count: elements.count)
        let buffer = sample.unsafeBuffer
        _ = buffer.initialize(from: elements)
        return try sample.assumeInitialized().send()
    }

    /// The pool's shared memory now: segments and bytes in /dev/shm, and
    /// how often it grew (`PoolAllocation`).
    public var footprint: PoolFootprint { port.footprint }

    /// Samples loaned and not yet sent or dropped.
    public var loanedSamples: Int { port.loanedCount }

    /// Subscribers this publisher delivers to now (as of the last loan or
    /// `waitForSubscribers`; new ones are taken in lazily).
    public var connectedSubscribers: Int { port.connectedSubscribers }

    /// Waits until at least `count` subscribers are connected, at most
    /// `timeout` (nil, the default: for ever — subscribers come at their own
    /// pace), polling the service's port table every millisecond (a set-up
    /// call, not a hot path). Returns false on timeout. Useful before a first
    /// send when a late joiner must not depend on history.
    public func waitForSubscribers(_ count: Int, timeout: Duration? = nil) throws(ServiceError) -> Bool {
        try port.waitForSubscribers(count, timeout: timeout)
    }
}
