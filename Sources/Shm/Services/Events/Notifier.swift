import ShmSystem
@_spi(ShmInternals) import ShmPrimitives

/// Signals event ids on an event service.
public final class Notifier: @unchecked Sendable {
    public let service: EventService
    public let portID: UInt64
    let slotIndex: Int
    let event: SharedEvent

    init(service: EventService) throws(ServiceError) {
        self.service = service
        portID = UInt64.random(in: 1...UInt64.max)
        event = service.event
        slotIndex = try service.attachment.layout.register(.producers, portID: portID, nodeHash: service.attachment.node.hash) { _ in }
    }

    deinit { service.attachment.layout.unregister(.producers, index: slotIndex, portID: portID) }

    /// Signals `id`, waking every waiting listener (no syscall if none sleeps).
    public func notify(_ id: EventID = 0) throws(ServiceError) {
        guard (0...service.config.maxEventID).contains(id.value) else {
            throw .invalidConfiguration("event id \(id) outside 0…\(service.config.maxEventID)")
        }
        service.counters.fire(id.value)
        event.signal(all: true)
    }
}
