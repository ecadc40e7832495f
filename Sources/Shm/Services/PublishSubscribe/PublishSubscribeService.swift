import ShmSystem
@_spi(ShmInternals) import ShmPrimitives

extension Node {
    /// Opens or creates a publish/subscribe service carrying one `Payload`
    /// value per sample.
    ///
    /// - Parameters:
    ///   - service: the service's name (`camera.frames`; segment `svc.<name>` in /dev/shm).
    ///   - payload: the `BitwiseCopyable` type of one sample.
    ///   - typeName: the payload type's name as the service records it;
    ///     defaults to the module-qualified Swift name (`MyMessages.Pose`).
    ///     Programs that declare the same type in different modules agree on
    ///     a name here.
    ///   - config: limits and policies, used when this call creates the
    ///     service and compared with the stored ones when it opens it.
    ///   - mode: open, create, or either (`.openOrCreate`).
    /// - Throws: `.incompatible` naming every difference if the service exists
    ///   with another payload type or configuration.
    public func publishSubscribe<Payload: BitwiseCopyable>(
        _ service: String, of payload: Payload.Type = Payload.self, typeName: String? = nil,
        config: PublishSubscribeConfig = .init(), mode: OpenMode = .openOrCreate
    ) throws(ServiceError) -> PublishSubscribeService<Payload> {
        let type = PayloadType(name: typeName ?? String(reflecting: Payload.self), size: MemoryLayout<Payload>.size,
                               alignment: MemoryLayout<Payload>.alignment)
        return try PublishSubscribeService(node: self, name: ServiceName(service), payload: type,
                                           maxSliceLength: 1, config: config, mode: mode)
    }

    /// Opens or creates a publish/subscribe service carrying slices of up to
    /// `maxLength` `Element`s per sample (e.g. bytes: `UInt8`).
    public func publishSubscribe<Element: BitwiseCopyable>(
        _ service: String, slicesOf element: Element.Type, maxLength: Int,
        config: PublishSubscribeConfig = .init(), mode: OpenMode = .openOrCreate
    ) throws(ServiceError) -> PublishSubscribeService<Element> {
        guard maxLength >= 1, maxLength <= ((1 << 32) - 1) / MemoryLayout<Element>.stride else {
            throw .invalidConfiguration("maxLength \(maxLength) must be 1…\(((1 << 32) - 1) / MemoryLayout<Element>.stride)")
        }
        let payload = PayloadType(name: "[\(String(reflecting: Element.self))]", size: maxLength * MemoryLayout<Element>.stride,
                                  alignment: MemoryLayout<Element>.alignment)
        return try PublishSubscribeService(node: self, name: ServiceName(service), payload: payload,
                                           maxSliceLength: maxLength, config: config, mode: mode)
    }
}

extension Node {
    /// Opens or creates a service of a payload type described by name, size
    /// and alignment (a type of another language: the C ABI), seen as bytes:
    /// each sample holds up to `payload.size` bytes.
    public func publishSubscribe(
        _ service: String, rawType payload: PayloadType,
        config: PublishSubscribeConfig = .init(), mode: OpenMode = .openOrCreate
    ) throws(ServiceError) -> PublishSubscribeService<UInt8> {
        guard payload.size >= 1, payload.size <= Int(UInt32.max), payload.alignment >= 1 else {
            throw .invalidConfiguration("payload size \(payload.size), alignment \(payload.alignment)")
        }
        return try PublishSubscribeService(node: self, name: ServiceName(service), payload: payload,
                                           maxSliceLength: payload.size, config: config, mode: mode)
    }
}

/// A publish/subscribe service: N publishers to M subscribers, zero-copy.
///
/// Each publisher owns a pool of samples in segments of its own (reserved
/// up front, or growing with what is in flight: `PoolAllocation`); a sample
/// is loaned from the pool, written in place, and sent by pushing its index
/// into every subscriber's queue (no copy). Subscribers read the sample in
/// the publisher's memory and hand it back when they drop it. See
/// `Publisher` and `Subscriber`.
public final class PublishSubscribeService<Payload: BitwiseCopyable>: @unchecked Sendable {
    let attachment: ServiceAttachment
    /// The service's name.
    public var name: String { attachment.name.value }
    /// The static configuration (as stored in the service).
    public let config: PublishSubscribeConfig
    /// What the service carries.
    public let payloadType: PayloadType
    /// Elements per sample at most (1 unless the service carries slices).
    public let maxSliceLength: Int

    init(node: Node, name: ServiceName, payload: PayloadType, maxSliceLength: Int,
         config: PublishSubscribeConfig, mode: OpenMode) throws(ServiceError) {
        try config.validate()
        guard config.historySize <= config.subscriberBufferSize else {
            throw .invalidConfiguration("historySize \(config.historySize) exceeds subscriberBufferSize \(config.subscriberBufferSize)")
        }
        let layoutConfig = ServiceLayout.Config(
            pattern: .publishSubscribe, payload: payload, maxProducers: config.maxPublishers, maxConsumers: config.maxSubscribers,
            bufferSize: config.subscriberBufferSize, history: config.historySize, maxLoans: config.maxLoans,
            maxBorrowed: config.maxBorrowed, overflow: UInt64(config.overflow.rawValue), requestSize: 0, responseSize: 0,
            maxEventID: 0)
        attachment = try ServiceAttachment(node: node, name: name, config: layoutConfig, mode: mode)
        self.config = config
        self.payloadType = payload
        self.maxSliceLength = maxSliceLength
    }

    /// Creates a publisher (registers it in the service).
    /// A publisher (a port with a pool of its own in /dev/shm).
    /// - Parameters:
    ///   - sendTimeout: how long a send waits for room under the `.block`
    ///     overflow policy (then the sample is counted lost for that
    ///     subscriber); also settable later.
    ///   - waitStrategy: how that wait waits: spinning, then sleeping on the
    ///     full subscriber's space parker (`FUTEX_WAIT`) until it pops —
    ///     the default —, only spinning, or only sleeping.
    ///   - allocation: how the pool gets its memory: reserved up front, or
    ///     growing with what is in flight (`.automatic`, the default, grows
    ///     pools that would reserve more than 1 MiB).
    /// - Throws: `.segment(.insufficientSpace…)` if /dev/shm cannot hold the
    ///   pool (its first segment; a growing pool's later segments fail the
    ///   loan that needed them the same way).
    public func publisher(sendTimeout: Duration? = .seconds(1), waitStrategy: WaitStrategy = .default,
                          allocation: PoolAllocation = .automatic) throws(ServiceError) -> Publisher<Payload> {
        let publisher = try Publisher(service: self, allocation: allocation)
        publisher.sendTimeout = sendTimeout
        publisher.port.waiter = Waiter(waitStrategy)
        return publisher
    }

    /// Creates a subscriber (registers it in the service).
    public func subscriber(waitStrategy: WaitStrategy = .default) throws(ServiceError) -> Subscriber<Payload> {
        try Subscriber(service: self, waitStrategy: waitStrategy)
    }

    /// Publishers and subscribers registered now.
    public var ports: [ServiceDirectory.PortInfo] {
        (try? ServiceDirectory.inspect(name).ports) ?? []
    }

    /// Takes back the slots of dead processes and removes their segments.
    @discardableResult
    public func reclaimDeadPorts() -> Int { attachment.reclaimDeadPorts() }

    var layout: ServiceLayout { attachment.layout }
    var serviceHash: UInt64 { ServiceLayout.hash(attachment.name.value) }
    var deliveryCapacity: Int { IndexQueue.capacity(atLeast: config.subscriberBufferSize) }
    /// Returns are taken back lazily (when the publisher's free list runs
    /// dry), and each chunk can be handed back at most once in between: a
    /// queue as large as the pool never overflows.
    var returnCapacity: Int { IndexQueue.capacity(atLeast: config.chunksPerPublisher) }
}

extension Node {
    /// Opens an existing publish/subscribe service whatever its payload type,
    /// seeing every sample as raw bytes (for tools: `shm sub`, `shm hz`).
    public func openAnyPublishSubscribe(_ service: String) throws(ServiceError) -> PublishSubscribeService<UInt8> {
        let (name, existing) = try ServiceLayout.existingConfig(of: service, pattern: .publishSubscribe, requested: "publish/subscribe")
        let config = PublishSubscribeConfig(
            maxPublishers: existing.maxProducers, maxSubscribers: existing.maxConsumers, subscriberBufferSize: existing.bufferSize,
            historySize: existing.history, maxLoans: existing.maxLoans, maxBorrowed: existing.maxBorrowed,
            overflow: OverflowPolicy(rawValue: UInt32(truncatingIfNeeded: existing.overflow)) ?? .overwriteOldest)
        return try PublishSubscribeService(node: self, name: name, payload: existing.payload,
                                           maxSliceLength: max(1, existing.payload.size), config: config, mode: .open)
    }
}
