import ShmSystem
@_spi(ShmInternals) import ShmPrimitives

/// A client or server as two halves of one port: a sending half over the
/// port's pool and a receiving half over its inbox, registered once in
/// `table` (see `PortRegistration`).
enum PortHalves {
    /// Creates the pool (`sending.chunksPerPublisher` chunks of `payload`)
    /// and the inbox (`inboxBlocks` blocks, one per slot of the other
    /// table) — both before the registration, so that peers who see it can
    /// map them — registers, and builds the halves. On failure nothing is
    /// left: segments unlinked, slot freed.
    static func open(attachment: ServiceAttachment, table: ServiceLayout.Table, sending: PublishSubscribeConfig, payload: PayloadType,
                     receiving: PublishSubscribeConfig, inboxBlocks: Int, sizes: RequestResponseSizes,
                     waitStrategy: WaitStrategy, allocation: PoolAllocation = .automatic) throws(ServiceError) -> (PublisherPort, SubscriberPort) {
        let id = UInt64.random(in: 1...UInt64.max)
        let direction = PortDirection.sending(from: table)
        // Requests and responses are loaned at their full size: a growing
        // pool grows in chunks only.
        let plan = PublisherPort.PoolPlan(payloadType: payload, slots: sending.chunksPerPublisher, allocation: allocation,
                                          initialBytes: { _ in payload.size })
        let pool = try PublisherPort.createPool(attachment: attachment, portID: id, plan: plan)
        let inbox: SharedMemorySegment
        do {
            inbox = try SubscriberPort.createInbox(attachment: attachment, portID: id, blocks: inboxBlocks,
                                                   deliveryCapacity: sizes.deliveryCapacity,
                                                   returnCapacity: sizes.returnCapacity(sender: receiving), waitStrategy: waitStrategy)
        } catch {
            pool.unlinkIfStillLinked()
            throw error
        }
        let registration: PortRegistration
        do {
            // Our slot index is our block in every receiver's inbox: prefer one
            // whose blocks a departed port's messages do not still occupy.
            registration = try PortRegistration(layout: attachment.layout, table: table, portID: id, nodeHash: attachment.node.hash,
                                                halves: 2, avoiding: attachment.layout.blocksInUse(direction))
        } catch {
            pool.unlinkIfStillLinked()
            inbox.unlinkIfStillLinked()
            throw error
        }
        let sender: PublisherPort
        do {
            sender = try PublisherPort(attachment: attachment, config: sending, direction: direction, poolSegment: pool, plan: plan,
                                       registration: registration)
        } catch {
            registration.leave()
            inbox.unlinkIfStillLinked()
            throw error
        }
        sender.waiter = Waiter(waitStrategy)
        let receiver = try SubscriberPort(attachment: attachment, config: receiving,
                                          direction: direction == .toConsumers ? .toProducers : .toConsumers,
                                          inboxSegment: inbox, registration: registration, elementStride: 1, minimumBytes: 0,
                                          waitStrategy: waitStrategy)
        return (sender, receiver)
    }
}
