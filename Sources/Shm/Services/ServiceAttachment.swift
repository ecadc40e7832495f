import ShmSystem
@_spi(ShmInternals) import ShmPrimitives

/// An open service: the mapped service segment, its validated layout, and
/// this handle's registration in the attachments table. Shared by the
/// pattern-specific service types; ports keep it alive.
final class ServiceAttachment: @unchecked Sendable {
    let name: ServiceName
    let node: Node
    let segment: SharedMemorySegment
    let layout: ServiceLayout
    let attachmentIndex: Int
    let attachmentID: UInt64

    /// Opens or creates service `name` with `config`, checks compatibility,
    /// registers this handle, and reclaims what dead processes left.
    init(node: Node, name: ServiceName, config: ServiceLayout.Config, mode: OpenMode) throws(ServiceError) {
        self.node = node
        self.name = name
        let segmentName: SegmentName
        do { segmentName = try SegmentName(name.segmentName) } catch { throw .invalidName(name.value, reason: error.description) }
        for _ in 0..<16 {
            let segment: SharedMemorySegment
            do {
                segment = try SharedMemorySegment.open(segmentName, kind: ServiceLayout.kind)
            } catch .notFound {
                guard mode != .open else { throw .notFound(service: name.value) }
                do {
                    segment = try SharedMemorySegment.create(segmentName, size: ServiceLayout.size(for: config), kind: ServiceLayout.kind,
                                                             lifetime: .persistent) { data in
                        ServiceLayout.initialize(data, config: config)
                    }
                } catch .alreadyExists {
                    continue
                } catch {
                    throw .segment(error)
                }
            } catch .kindMismatch(_, _, let found) {
                throw .incompatible(service: name.value, differences: ["segment holds a \(SegmentKind(rawValue: found)) structure, not a service"])
            } catch {
                throw .segment(error)
            }
            if segment.isCreator == false, mode == .create { throw .alreadyExists(service: name.value) }
            let layout = try ServiceLayout(opening: segment.data, name: name)
            let differences = config.differences(from: layout.config)
            guard differences.isEmpty else { throw .incompatible(service: name.value, differences: differences) }
            let id = UInt64.random(in: 1...UInt64.max)
            let index = try layout.register(.attachments, portID: id, nodeHash: node.hash) { _ in }
            // The last user may have unlinked the name between our open and our registration.
            guard segment.isStillLinked else {
                layout.unregister(.attachments, index: index, portID: id)
                continue
            }
            self.segment = segment
            self.layout = layout
            self.attachmentIndex = index
            self.attachmentID = id
            reclaimDeadPorts()
            return
        }
        throw .corrupt(service: name.value, reason: "the service kept disappearing while being opened")
    }

    deinit {
        layout.unregister(.attachments, index: attachmentIndex, portID: attachmentID)
        removeIfUnused()
    }

    /// Takes back the slots of dead processes and removes their port segments.
    @discardableResult
    func reclaimDeadPorts() -> Int {
        var reclaimed = 0
        for table in [ServiceLayout.Table.producers, .consumers] {
            // What it had delivered stays receivable (DepartedPools.swift).
            reclaimed += layout.reclaimDeadPorts(table) { entry in self.layout.removeSegments(ofDeparted: entry, in: table) }
        }
        reclaimed += layout.reclaimDeadPorts(.attachments) { _ in }
        return reclaimed
    }

    /// Unlinks the service segment when no live handle or port uses it.
    func removeIfUnused() {
        reclaimDeadPorts()
        let inUse = !layout.entries(.attachments).isEmpty || !layout.entries(.producers).isEmpty || !layout.entries(.consumers).isEmpty
        if !inUse { segment.unlinkIfStillLinked() }
    }

    /// Ports of `table`, for diagnostics.
    func ports(_ table: ServiceLayout.Table) -> [ServiceLayout.PortEntry] { layout.entries(table) }
}
