import ShmSystem
@_spi(ShmInternals) import ShmPrimitives

/// A robust process-shared mutex in its own named shared-memory segment (kind `MUTX`).
extension SharedMutex {
    /// The segment kind of a named mutex (`SharedMemorySegment` header).
    public static let kind = SegmentKind("MUTX")

    /// Creates the segment `name` holding a new mutex.
    ///
    /// - Throws: `SegmentError` (name taken, /dev/shm full, …).
    public static func create(_ name: String, mode: FileMode = 0o600,
                              lifetime: SharedMemorySegment.Lifetime = .removedWithCreator) throws -> SharedMutex {
        let segment = try createStructureSegment(name, dataSize: size, kind: kind, mode: mode, lifetime: lifetime) { data in
            _ = try SharedMutex.initialize(data)
        }
        return try SharedMutex(segment: segment)
    }

    /// Opens the mutex in segment `name`.
    public static func open(_ name: String, timeout: Duration = .seconds(2)) throws -> SharedMutex {
        try SharedMutex(segment: SharedMemorySegment.open(name, kind: kind, timeout: timeout))
    }

    /// Attaches to a mutex laid out in the data area of any segment.
    public convenience init(segment: any Segment) throws {
        try self.init(attaching: segment.data, anchor: segment)
    }

    /// The segment this mutex lives in, when it was opened through one.
    public var segment: (any Segment)? { anchor as? any Segment }
}
