import ShmSystem
@_spi(ShmInternals) import ShmPrimitives

/// An event (notification word) in its own named shared-memory segment (kind `EVNT`).
extension SharedEvent {
    /// The segment kind of a named event (`SharedMemorySegment` header).
    public static let kind = SegmentKind("EVNT")

    /// Creates the segment `name` holding a new event.
    ///
    /// - Throws: `SegmentError` (name taken, /dev/shm full, …).
    public static func create(_ name: String, mode: FileMode = 0o600,
                              lifetime: SharedMemorySegment.Lifetime = .removedWithCreator,
                              waitStrategy: WaitStrategy = .default) throws -> SharedEvent {
        let segment = try createStructureSegment(name, dataSize: size, kind: kind, mode: mode, lifetime: lifetime) { data in
            _ = try SharedEvent.initialize(data)
        }
        return try SharedEvent(segment: segment, waitStrategy: waitStrategy)
    }

    /// Opens the event in segment `name`.
    public static func open(_ name: String, timeout: Duration = .seconds(2),
                            waitStrategy: WaitStrategy = .default) throws -> SharedEvent {
        try SharedEvent(segment: SharedMemorySegment.open(name, kind: kind, timeout: timeout), waitStrategy: waitStrategy)
    }

    /// Attaches to a event laid out in the data area of any segment.
    public convenience init(segment: any Segment, waitStrategy: WaitStrategy = .default) throws {
        try self.init(attaching: segment.data, anchor: segment, waitStrategy: waitStrategy)
    }

    /// The segment this event lives in, when it was opened through one.
    public var segment: (any Segment)? { anchor as? any Segment }
}
