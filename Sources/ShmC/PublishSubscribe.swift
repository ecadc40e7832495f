import CSwiftShm
import Shm

// Nodes and publish/subscribe for C (swiftshm.h). Services are seen as
// bytes (`PublishSubscribeService<UInt8>`): byte-slice services as Swift's
// `slicesOf: UInt8.self`, fixed-size types by name, size and alignment.

final class LoanHandle {
    var sample: UninitializedSample<UInt8>?
    let owner: Box<Publisher<UInt8>>
    init(_ sample: consuming UninitializedSample<UInt8>, owner: Box<Publisher<UInt8>>) {
        self.sample = consume sample
        self.owner = owner
    }
}

final class SubscriberHandle {
    let subscriber: Subscriber<UInt8>
    var readiness: Readiness?
    init(_ subscriber: Subscriber<UInt8>) { self.subscriber = subscriber }
}

final class SampleHandle {
    var sample: ReceivedSample<UInt8>?
    let owner: SubscriberHandle
    let sequence: UInt64
    let publisherID: UInt64
    init(_ sample: consuming ReceivedSample<UInt8>, owner: SubscriberHandle) {
        sequence = sample.sequence
        publisherID = sample.publisherID
        self.sample = consume sample
        self.owner = owner
    }
}

@_cdecl("shm_node_create")
public func shm_node_create(_ name: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    cabi {
        let node = try Node(name: try string(name, "name"))
        try store(handle(Box(node)), out, "out")
        return SHM_OK
    }
}

@_cdecl("shm_node_free")
public func shm_node_free(_ node: OpaquePointer?) { release(node, Box<Node>.self) }

@_cdecl("shm_pubsub_options_init")
public func shm_pubsub_options_init(_ options: UnsafeMutablePointer<shm_pubsub_options>?) {
    guard let options else { return }
    options.pointee = shm_pubsub_options(
        struct_size: UInt32(MemoryLayout<shm_pubsub_options>.size), type_name: nil, type_size: 4096, type_alignment: 1,
        max_publishers: 8, max_subscribers: 8, buffer_size: 8, history_size: 0, max_loans: 4, max_borrowed: 4,
        overflow: UInt32(SHM_OVERFLOW_OVERWRITE_OLDEST), open_mode: UInt32(SHM_OPEN_OR_CREATE))
}

@_cdecl("shm_pubsub_open")
public func shm_pubsub_open(_ node: OpaquePointer?, _ name: UnsafePointer<CChar>?,
                            _ options: UnsafePointer<shm_pubsub_options>?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    cabi {
        let node = try object(node, Box<Node>.self, "node").value
        let service = try string(name, "service")
        var o = shm_pubsub_options()
        shm_pubsub_options_init(&o)
        if let options {
            guard options.pointee.struct_size >= UInt32(MemoryLayout<shm_pubsub_options>.size) else {
                throw CABIError.invalid("options.struct_size \(options.pointee.struct_size): call shm_pubsub_options_init first")
            }
            o = options.pointee
        }
        if o.type_size == 0 && o.open_mode == UInt32(SHM_OPEN) {
            // Open whatever the service carries, seen as bytes.
            try store(handle(Box(try node.openAnyPublishSubscribe(service))), out, "out")
            return SHM_OK
        }
        guard o.type_size >= 1, o.type_size <= UInt64(UInt32.max), o.type_alignment >= 1, o.type_alignment <= 4096,
              o.type_alignment & (o.type_alignment - 1) == 0 else {
            throw CABIError.invalid("type_size \(o.type_size) / type_alignment \(o.type_alignment)")
        }
        guard let overflow = OverflowPolicy(cOverflow: o.overflow) else { throw CABIError.invalid("overflow \(o.overflow)") }
        let config = PublishSubscribeConfig(
            maxPublishers: Int(o.max_publishers), maxSubscribers: Int(o.max_subscribers), subscriberBufferSize: Int(o.buffer_size),
            historySize: Int(o.history_size), maxLoans: Int(o.max_loans), maxBorrowed: Int(o.max_borrowed), overflow: overflow)
        let mode = try openMode(o.open_mode)
        let opened: PublishSubscribeService<UInt8>
        if let typeName = o.type_name {
            opened = try node.publishSubscribe(service, rawType: PayloadType(name: String(cString: typeName), size: Int(o.type_size),
                                                                              alignment: Int(o.type_alignment)),
                                               config: config, mode: mode)
        } else {
            opened = try node.publishSubscribe(service, slicesOf: UInt8.self, maxLength: Int(o.type_size), config: config, mode: mode)
        }
        try store(handle(Box(opened)), out, "out")
        return SHM_OK
    }
}

@_cdecl("shm_pubsub_free")
public func shm_pubsub_free(_ service: OpaquePointer?) { release(service, Box<PublishSubscribeService<UInt8>>.self) }

@_cdecl("shm_pubsub_max_bytes")
public func shm_pubsub_max_bytes(_ service: OpaquePointer?) -> UInt64 {
    (try? object(service, Box<PublishSubscribeService<UInt8>>.self, "service")).map { UInt64($0.value.maxSliceLength) } ?? 0
}

@_cdecl("shm_publisher_create")
public func shm_publisher_create(_ service: OpaquePointer?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    cabi {
        let publisher = try object(service, Box<PublishSubscribeService<UInt8>>.self, "service").value.publisher()
        try store(handle(Box(publisher)), out, "out")
        return SHM_OK
    }
}

@_cdecl("shm_publisher_create_with_pool")
public func shm_publisher_create_with_pool(_ service: OpaquePointer?, _ pool: UInt32,
                                           _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    cabi {
        let allocation: PoolAllocation
        switch pool {
        case UInt32(SHM_POOL_AUTOMATIC): allocation = .automatic
        case UInt32(SHM_POOL_RESERVED): allocation = .reserved
        case UInt32(SHM_POOL_GROWING): allocation = .growing()
        default: return failure(SHM_E_INVALID_ARGUMENT, "pool \(pool) is not SHM_POOL_AUTOMATIC, _RESERVED or _GROWING")
        }
        let publisher = try object(service, Box<PublishSubscribeService<UInt8>>.self, "service").value.publisher(allocation: allocation)
        try store(handle(Box(publisher)), out, "out")
        return SHM_OK
    }
}

@_cdecl("shm_publisher_footprint")
public func shm_publisher_footprint(_ publisher: OpaquePointer?, _ bytes: UnsafeMutablePointer<UInt64>?,
                                    _ segments: UnsafeMutablePointer<UInt32>?, _ chunks: UnsafeMutablePointer<UInt64>?,
                                    _ chunkCapacity: UnsafeMutablePointer<UInt64>?) -> Int32 {
    cabi {
        let footprint = try object(publisher, Box<Publisher<UInt8>>.self, "publisher").value.footprint
        bytes?.pointee = UInt64(footprint.bytes)
        segments?.pointee = UInt32(footprint.segments)
        chunks?.pointee = UInt64(footprint.chunks)
        chunkCapacity?.pointee = UInt64(footprint.chunkCapacity)
        return SHM_OK
    }
}

@_cdecl("shm_publisher_free")
public func shm_publisher_free(_ publisher: OpaquePointer?) { release(publisher, Box<Publisher<UInt8>>.self) }

@_cdecl("shm_publisher_set_send_timeout")
public func shm_publisher_set_send_timeout(_ publisher: OpaquePointer?, _ nanoseconds: Int64) -> Int32 {
    cabi {
        try object(publisher, Box<Publisher<UInt8>>.self, "publisher").value.sendTimeout = timeout(nanoseconds)
        return SHM_OK
    }
}

@_cdecl("shm_publisher_subscribers")
public func shm_publisher_subscribers(_ publisher: OpaquePointer?, _ count: UnsafeMutablePointer<UInt32>?) -> Int32 {
    cabi {
        try store(UInt32(try object(publisher, Box<Publisher<UInt8>>.self, "publisher").value.connectedSubscribers), count, "count")
        return SHM_OK
    }
}

@_cdecl("shm_publisher_wait_for_subscribers")
public func shm_publisher_wait_for_subscribers(_ publisher: OpaquePointer?, _ count: UInt32, _ nanoseconds: Int64) -> Int32 {
    cabi {
        let p = try object(publisher, Box<Publisher<UInt8>>.self, "publisher").value
        guard try p.waitForSubscribers(Int(count), timeout: timeout(nanoseconds) ?? .seconds(86_400 * 365)) else {
            return failure(SHM_E_TIMED_OUT, "fewer than \(count) subscriber(s) within the timeout (\(p.connectedSubscribers) connected)")
        }
        return SHM_OK
    }
}

@_cdecl("shm_publisher_loan")
public func shm_publisher_loan(_ publisher: OpaquePointer?, _ bytes: UInt64, _ loan: UnsafeMutablePointer<OpaquePointer?>?,
                               _ data: UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> Int32 {
    cabi {
        let owner = try object(publisher, Box<Publisher<UInt8>>.self, "publisher")
        guard loan != nil, data != nil else { throw CABIError.invalid("loan or data is NULL") }
        guard bytes >= 1, bytes <= UInt64(owner.value.service.maxSliceLength) else {
            throw CABIError.invalid("a loan of \(bytes) bytes: samples of this service hold 1…\(owner.value.service.maxSliceLength)")
        }
        let sample = try owner.value.loanUninitialized(count: Int(bytes))
        let address = UnsafeMutableRawPointer(sample.unsafeBuffer.baseAddress)
        let box = LoanHandle(sample, owner: owner)
        loan!.pointee = handle(box)
        data!.pointee = address
        return SHM_OK
    }
}

@_cdecl("shm_loan_send")
public func shm_loan_send(_ loan: OpaquePointer?, _ reached: UnsafeMutablePointer<UInt32>?) -> Int32 {
    cabi {
        let box = try object(loan, LoanHandle.self, "loan")
        defer { release(loan, LoanHandle.self) }
        guard let sample = box.sample.take() else { throw CABIError.state("the loan was already sent") }
        let count = try sample.assumeInitialized().send()
        reached?.pointee = UInt32(count)
        return SHM_OK
    }
}

@_cdecl("shm_loan_discard")
public func shm_loan_discard(_ loan: OpaquePointer?) { release(loan, LoanHandle.self) }

@_cdecl("shm_publisher_send_copy")
public func shm_publisher_send_copy(_ publisher: OpaquePointer?, _ data: UnsafeRawPointer?, _ bytes: UInt64,
                                    _ reached: UnsafeMutablePointer<UInt32>?) -> Int32 {
    cabi {
        let p = try object(publisher, Box<Publisher<UInt8>>.self, "publisher").value
        guard let data else { throw CABIError.invalid("data is NULL") }
        guard bytes >= 1, bytes <= UInt64(p.service.maxSliceLength) else {
            throw CABIError.invalid("\(bytes) bytes: samples of this service hold 1…\(p.service.maxSliceLength)")
        }
        let sample = try p.loanUninitialized(count: Int(bytes))
        UnsafeMutableRawPointer(sample.unsafeBuffer.baseAddress!).copyMemory(from: data, byteCount: Int(bytes))
        let count = try sample.assumeInitialized().send()
        reached?.pointee = UInt32(count)
        return SHM_OK
    }
}

@_cdecl("shm_subscriber_create")
public func shm_subscriber_create(_ service: OpaquePointer?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    cabi {
        let subscriber = try object(service, Box<PublishSubscribeService<UInt8>>.self, "service").value.subscriber()
        try store(handle(SubscriberHandle(subscriber)), out, "out")
        return SHM_OK
    }
}

@_cdecl("shm_subscriber_free")
public func shm_subscriber_free(_ subscriber: OpaquePointer?) { release(subscriber, SubscriberHandle.self) }

@_cdecl("shm_subscriber_receive")
public func shm_subscriber_receive(_ subscriber: OpaquePointer?, _ nanoseconds: Int64, _ sample: UnsafeMutablePointer<OpaquePointer?>?,
                                   _ data: UnsafeMutablePointer<UnsafeRawPointer?>?, _ bytes: UnsafeMutablePointer<UInt64>?) -> Int32 {
    cabi {
        let owner = try object(subscriber, SubscriberHandle.self, "subscriber")
        guard sample != nil, data != nil, bytes != nil else { throw CABIError.invalid("sample, data or bytes is NULL") }
        let received: ReceivedSample<UInt8>
        if nanoseconds == 0 {
            guard let next = try owner.subscriber.tryReceive() else { return failure(SHM_E_TIMED_OUT, "no sample waiting") }
            received = next
        } else {
            received = try owner.subscriber.receive(timeout: timeout(nanoseconds))
        }
        data!.pointee = received.unsafeBytes.baseAddress
        bytes!.pointee = UInt64(received.unsafeBytes.count)
        sample!.pointee = handle(SampleHandle(received, owner: owner))
        return SHM_OK
    }
}

@_cdecl("shm_subscriber_receive_copy")
public func shm_subscriber_receive_copy(_ subscriber: OpaquePointer?, _ nanoseconds: Int64, _ buffer: UnsafeMutableRawPointer?,
                                        _ capacity: UInt64, _ bytes: UnsafeMutablePointer<UInt64>?) -> Int32 {
    cabi {
        let s = try object(subscriber, SubscriberHandle.self, "subscriber").subscriber
        guard let bytes, buffer != nil || capacity == 0 else { throw CABIError.invalid("buffer or bytes is NULL") }
        let received: ReceivedSample<UInt8>
        if nanoseconds == 0 {
            guard let next = try s.tryReceive() else { return failure(SHM_E_TIMED_OUT, "no sample waiting") }
            received = next
        } else {
            received = try s.receive(timeout: timeout(nanoseconds))
        }
        let payload = received.unsafeBytes
        bytes.pointee = UInt64(payload.count)
        guard UInt64(payload.count) <= capacity else {
            throw CABIError.invalid("a sample of \(payload.count) bytes does not fit \(capacity)")
        }
        if let source = payload.baseAddress, let buffer { buffer.copyMemory(from: source, byteCount: payload.count) }
        return SHM_OK
    }
}

@_cdecl("shm_subscriber_lost")
public func shm_subscriber_lost(_ subscriber: OpaquePointer?) -> UInt64 {
    (try? object(subscriber, SubscriberHandle.self, "subscriber"))?.subscriber.lostSamples ?? 0
}

@_cdecl("shm_subscriber_fd")
public func shm_subscriber_fd(_ subscriber: OpaquePointer?, _ fd: UnsafeMutablePointer<Int32>?) -> Int32 {
    cabi {
        let owner = try object(subscriber, SubscriberHandle.self, "subscriber")
        if owner.readiness == nil { owner.readiness = try owner.subscriber.makeReadiness() }
        try store(owner.readiness!.fileDescriptor, fd, "fd")
        return SHM_OK
    }
}

@_cdecl("shm_subscriber_rearm")
public func shm_subscriber_rearm(_ subscriber: OpaquePointer?) -> Int32 {
    cabi {
        try object(subscriber, SubscriberHandle.self, "subscriber").readiness?.rearm()
        return SHM_OK
    }
}

@_cdecl("shm_sample_sequence")
public func shm_sample_sequence(_ sample: OpaquePointer?) -> UInt64 {
    (try? object(sample, SampleHandle.self, "sample"))?.sequence ?? 0
}

@_cdecl("shm_sample_publisher")
public func shm_sample_publisher(_ sample: OpaquePointer?) -> UInt64 {
    (try? object(sample, SampleHandle.self, "sample"))?.publisherID ?? 0
}

@_cdecl("shm_sample_release")
public func shm_sample_release(_ sample: OpaquePointer?) { release(sample, SampleHandle.self) }

extension OverflowPolicy {
    init?(cOverflow value: UInt32) {
        switch value {
        case UInt32(SHM_OVERFLOW_OVERWRITE_OLDEST): self = .overwriteOldest
        case UInt32(SHM_OVERFLOW_DISCARD): self = .discard
        case UInt32(SHM_OVERFLOW_BLOCK): self = .block
        default: return nil
        }
    }
}
