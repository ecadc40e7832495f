import ShmSystem
@_spi(ShmInternals) import ShmPrimitives

/// A sample loaned from a publisher's pool whose payload has not been
/// written yet. It cannot be sent: `write` (one value) or
/// `assumeInitialized` (after filling `unsafeBuffer`) turn it into a
/// `Sample`. Dropping it gives the memory back to the pool.
public struct UninitializedSample<Payload: BitwiseCopyable>: ~Copyable {
    /// Unretained: the port outlives its loans (`PublisherPort.retire`).
    @usableFromInline let port: Unmanaged<PublisherPort>
    @usableFromInline let chunk: Int
    /// Elements in this sample (1 for single-value services).
    public let count: Int
    /// Set when the chunk passes to a `Sample` (`discard self` is not yet
    /// allowed for types with reference-counted fields).
    @usableFromInline var handedOver = false

    @usableFromInline
    init(port: Unmanaged<PublisherPort>, chunk: Int, count: Int) {
        self.port = port
        self.chunk = chunk
        self.count = count
    }

    @inlinable
    var payloadAddress: UnsafeMutableRawPointer { port._withUnsafeGuaranteedRef { $0.payload(chunk) } }

    /// The sample's memory in the shared pool, not yet initialized.
    @inlinable
    public var unsafeBuffer: UnsafeMutableBufferPointer<Payload> {
        UnsafeMutableBufferPointer(start: payloadAddress.assumingMemoryBound(to: Payload.self), count: count)
    }

    /// Writes `value` (the sample's only element) and returns the sendable sample.
    @inlinable
    public consuming func write(_ value: Payload) -> Sample<Payload> {
        precondition(count == 1, "write(_:) is for single-value samples; use unsafeBuffer and assumeInitialized() for slices")
        payloadAddress.initializeMemory(as: Payload.self, repeating: value, count: 1)
        handedOver = true
        return Sample(port: port, chunk: chunk, count: count)
    }

    /// Fills the payload with `body` and returns the sendable sample.
    @inlinable
    public consuming func initialize(_ body: (UnsafeMutableBufferPointer<Payload>) -> Void) -> Sample<Payload> {
        body(unsafeBuffer)
        return assumeInitialized()
    }

    /// Declares every element of `unsafeBuffer` written. Unsafe: the
    /// compiler cannot check it; an element left unwritten is sent as
    /// whatever the pool chunk held before (an earlier sample's bytes).
    @unsafe @inlinable
    public consuming func assumeInitialized() -> Sample<Payload> {
        handedOver = true
        return Sample(port: port, chunk: chunk, count: count)
    }

    deinit { if !handedOver { Self.giveBack(chunk, to: port) } }

    static func giveBack(_ chunk: Int, to port: Unmanaged<PublisherPort>) {
        if port._withUnsafeGuaranteedRef({ $0.returnLoan(chunk) }) { port.release() }
    }
}

/// A written sample in a publisher's pool, ready to send. Sending consumes
/// it; dropping it unsent gives the memory back to the pool.
public struct Sample<Payload: BitwiseCopyable>: ~Copyable {
    /// Unretained: the port outlives its loans (`PublisherPort.retire`).
    @usableFromInline let port: Unmanaged<PublisherPort>
    @usableFromInline let chunk: Int
    public let count: Int
    @usableFromInline var sent = false

    @usableFromInline
    init(port: Unmanaged<PublisherPort>, chunk: Int, count: Int) {
        self.port = port
        self.chunk = chunk
        self.count = count
    }

    @inlinable
    var payloadAddress: UnsafeMutableRawPointer { port._withUnsafeGuaranteedRef { $0.payload(chunk) } }

    /// The payload, in shared memory (single-value samples).
    @inlinable
    public var payload: Payload {
        get { payloadAddress.load(as: Payload.self) }
        nonmutating set { payloadAddress.storeBytes(of: newValue, as: Payload.self) }
    }

    /// The payload elements, in shared memory (valid until sent or dropped).
    @inlinable
    public var unsafeBuffer: UnsafeMutableBufferPointer<Payload> {
        UnsafeMutableBufferPointer(start: payloadAddress.assumingMemoryBound(to: Payload.self), count: count)
    }

    @available(*, deprecated, renamed: "unsafeBuffer")
    public var buffer: UnsafeMutableBufferPointer<Payload> { unsafeBuffer }

    /// Delivers the sample to every connected subscriber without copying it;
    /// returns how many it reached.
    @discardableResult @inlinable
    public consuming func send() throws(ServiceError) -> Int {
        sent = true
        let port = self.port, chunk = self.chunk, bytes = count * MemoryLayout<Payload>.stride
        defer { if port._withUnsafeGuaranteedRef({ $0.lastLoanOfRetiredPort }) { port.release() } }
        // (`_withUnsafeGuaranteedRef` rethrows untyped errors: carry ours in a Result.)
        let result = port._withUnsafeGuaranteedRef { p in
            Result { () throws(ServiceError) -> Int in try p.deliver(chunk: chunk, bytes: bytes) }
        }
        return try result.get()
    }

    deinit { if !sent { UninitializedSample<Payload>.giveBack(chunk, to: port) } }
}

/// A sample received by a subscriber: read-only, in the publisher's memory.
/// Dropping it hands the memory back to the publisher.
public struct ReceivedSample<Payload: BitwiseCopyable>: ~Copyable {
    /// Unretained: the connection outlives its samples (`InboundConnection.retire`).
    @usableFromInline let connection: Unmanaged<InboundConnection>
    @usableFromInline let reference: UInt64
    @usableFromInline let address: UnsafeRawPointer
    @usableFromInline let header: UnsafeRawPointer
    /// Elements in this sample.
    public let count: Int
    @usableFromInline
    init(delivery: SubscriberPort.Delivery, count: Int) {
        connection = delivery.connection
        reference = delivery.reference
        address = delivery.address
        header = delivery.header
        self.count = count
    }

    /// The publisher that sent it.
    @inlinable
    public var publisherID: UInt64 { connection._withUnsafeGuaranteedRef { $0.publisherID } }

    /// The publisher's number for this sample (1, 2, …), read from the
    /// sample's header only when asked for (one cache line fewer per receive).
    @inlinable
    public var sequence: UInt64 { header.load(as: UInt64.self) }

    /// The payload (single-value samples).
    @inlinable
    public var payload: Payload { address.loadUnaligned(as: Payload.self) }

    /// The payload elements, read in place in the publisher's memory (valid
    /// until the sample is released or dropped).
    @inlinable
    public var unsafeBuffer: UnsafeBufferPointer<Payload> {
        UnsafeBufferPointer(start: address.assumingMemoryBound(to: Payload.self), count: count)
    }

    /// The payload as raw bytes, in place (valid until released or dropped).
    @inlinable
    public var unsafeBytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: address, count: count * MemoryLayout<Payload>.stride) }

    @available(*, deprecated, renamed: "unsafeBuffer")
    public var buffer: UnsafeBufferPointer<Payload> { unsafeBuffer }

    @available(*, deprecated, renamed: "unsafeBytes")
    public var bytes: UnsafeRawBufferPointer { unsafeBytes }

    /// Hands the sample back now (the same as dropping it).
    public consuming func release() {}

    @inlinable
    deinit {
        let reference = self.reference
        let released = connection._withUnsafeGuaranteedRef { $0.giveBack(reference) }
        if released.connection { connection.release() }
        released.port?.release()
    }
}
