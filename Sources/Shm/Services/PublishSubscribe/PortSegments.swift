import ShmSystem
@_spi(ShmInternals) import ShmPrimitives

// The ports' segments as the service layer opens them: the primitives'
// layout errors become `ServiceError.corrupt`, naming the service.

extension ChunkPool {
    init(_ data: MappedBytes, expectedPortID: UInt64, serviceHash: UInt64, service: String) throws(ServiceError) {
        do { try self.init(data, expectedPortID: expectedPortID, serviceHash: serviceHash) }
        catch { throw .corrupt(service: service, reason: error.layoutReason) }
    }
}

extension SampleInbox {
    init(_ data: MappedBytes, expectedPortID: UInt64, service: String) throws(ServiceError) {
        do { try self.init(data, expectedPortID: expectedPortID) }
        catch { throw .corrupt(service: service, reason: error.layoutReason) }
    }
}

extension QueueError {
    /// What is wrong with a layout, without the generic prefix.
    var layoutReason: String {
        if case .invalidLayout(let reason) = self { return reason }
        return description
    }
}
