import ShmSystem
@_spi(ShmInternals) import ShmPrimitives

/// Creates a named segment of `kind` whose data area is laid out by `layout`
/// before anyone can open it.
func createStructureSegment(
    _ name: String, dataSize: Int, kind: SegmentKind, mode: FileMode,
    lifetime: SharedMemorySegment.Lifetime, layout: @escaping (MappedBytes) throws -> Void
) throws -> SharedMemorySegment {
    try SharedMemorySegment.create(SegmentName(name), size: dataSize, mode: mode, kind: kind, lifetime: lifetime,
                                   initialize: layout)
}
