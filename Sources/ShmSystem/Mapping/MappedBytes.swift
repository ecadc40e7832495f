/// A bounds-checked view of bytes in a mapping.
///
/// Every access is checked against the view's bounds (a violation is a
/// programmer error and traps, like an `Array` index). The view keeps its
/// `MemoryMapping` alive, so it can never outlive the memory it shows.
///
/// Escapes to raw pointers are named for what they are:
/// `withUnsafeBytes` / `withUnsafeMutableBytes` lend a buffer for the length
/// of a closure; `unsafeBaseAddress` hands out the address with no lifetime
/// guarantee beyond the view's owner.
public struct MappedBytes: RandomAccessCollection, MutableCollection, Sendable {
    public typealias Index = Int
    public typealias Element = UInt8
    public typealias SubSequence = Slice<MappedBytes>

    /// The mapping this view belongs to.
    public let owner: MemoryMapping
    /// Where the view starts, relative to the start of the mapping.
    public let offsetInMapping: Int
    /// Number of bytes in the view.
    public let count: Int

    package init(owner: MemoryMapping, offset: Int, count: Int) {
        precondition(offset >= 0 && count >= 0 && offset + count <= owner.length, "view outside its mapping")
        self.owner = owner
        self.offsetInMapping = offset
        self.count = count
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { count }

    /// The first byte of the view. Valid as long as `owner` is alive.
    public var unsafeBaseAddress: UnsafeMutableRawPointer { owner.unsafeBaseAddress + offsetInMapping }

    @inline(__always)
    func checkRange(_ offset: Int, _ length: Int) {
        precondition(offset >= 0 && length >= 0 && offset <= count && length <= count - offset,
                     "byte range \(offset)..<\(offset &+ length) outside a view of \(count) bytes")
    }

    @inline(__always)
    func checkWritable() {
        precondition(owner.access.isWritable, "write to read-only mapping of \(owner.label)")
    }

    public subscript(position: Int) -> UInt8 {
        get {
            checkRange(position, 1)
            return unsafeBaseAddress.load(fromByteOffset: position, as: UInt8.self)
        }
        nonmutating set {
            checkRange(position, 1)
            checkWritable()
            unsafeBaseAddress.storeBytes(of: newValue, toByteOffset: position, as: UInt8.self)
        }
    }

    public subscript(bounds: Range<Int>) -> Slice<MappedBytes> {
        get {
            checkRange(bounds.lowerBound, bounds.count)
            return Slice(base: self, bounds: bounds)
        }
        set {
            checkRange(bounds.lowerBound, bounds.count)
            precondition(newValue.count == bounds.count, "replacement of a different length")
            for (i, byte) in zip(bounds, newValue) { self[i] = byte }
        }
    }

    /// A view of `range` whose indices start at 0.
    public func view(_ range: Range<Int>) -> MappedBytes {
        checkRange(range.lowerBound, range.count)
        return MappedBytes(owner: owner, offset: offsetInMapping + range.lowerBound, count: range.count)
    }

    /// Reads a value of a trivial type at `offset` (any alignment).
    @inlinable
    public func load<T: BitwiseCopyable>(fromByteOffset offset: Int, as type: T.Type) -> T {
        precondition(offset >= 0 && offset <= count - MemoryLayout<T>.size, "load of \(T.self) at \(offset) outside a view of \(count) bytes")
        return (owner.unsafeBaseAddress + offsetInMapping).loadUnaligned(fromByteOffset: offset, as: T.self)
    }

    /// Writes a value of a trivial type at `offset` (any alignment).
    @inlinable
    public func storeBytes<T: BitwiseCopyable>(of value: T, toByteOffset offset: Int, as type: T.Type = T.self) {
        precondition(offset >= 0 && offset <= count - MemoryLayout<T>.size, "store of \(T.self) at \(offset) outside a view of \(count) bytes")
        precondition(owner.access.isWritable, "write to read-only mapping of \(owner.label)")
        (owner.unsafeBaseAddress + offsetInMapping).storeBytes(of: value, toByteOffset: offset, as: T.self)
    }

    /// Copies `bytes` into the view starting at `offset`.
    public func write(_ bytes: some Collection<UInt8>, at offset: Int = 0) {
        checkRange(offset, bytes.count)
        checkWritable()
        let destination = UnsafeMutableRawBufferPointer(start: unsafeBaseAddress + offset, count: bytes.count)
        if bytes.withContiguousStorageIfAvailable({ destination.copyMemory(from: UnsafeRawBufferPointer($0)) }) == nil {
            destination.copyBytes(from: bytes)
        }
    }

    /// Copies `count` bytes starting at `offset` out of the view.
    public func read(_ range: Range<Int>) -> [UInt8] {
        checkRange(range.lowerBound, range.count)
        return Array(UnsafeRawBufferPointer(start: unsafeBaseAddress + range.lowerBound, count: range.count))
    }

    /// Fills the whole view with `byte` (`memset`).
    public func fill(with byte: UInt8) {
        checkWritable()
        unsafeBaseAddress.initializeMemory(as: UInt8.self, repeating: byte, count: count)
    }

    /// Lends the view's bytes as a raw buffer for the duration of `body`.
    public func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(UnsafeRawBufferPointer(start: unsafeBaseAddress, count: count))
    }

    /// Lends the view's bytes as a mutable raw buffer for the duration of `body`.
    public func withUnsafeMutableBytes<R, E: Error>(_ body: (UnsafeMutableRawBufferPointer) throws(E) -> R) throws(E) -> R {
        checkWritable()
        return try body(UnsafeMutableRawBufferPointer(start: unsafeBaseAddress, count: count))
    }

    /// `msync(2)` of the pages under this view.
    public func sync(_ mode: SyncMode = .synchronous) throws(MappingError) {
        try owner.sync(mode, range: offsetInMapping..<offsetInMapping + count)
    }

    /// `madvise(2)` on the pages under this view.
    public func advise(_ advice: MappingAdvice) throws(MappingError) {
        try owner.advise(advice, range: offsetInMapping..<offsetInMapping + count)
    }

    /// `mlock(2)` of the pages under this view.
    public func lock() throws(MappingError) {
        try owner.lock(range: offsetInMapping..<offsetInMapping + count)
    }

    /// `munlock(2)` of the pages under this view.
    public func unlock() throws(MappingError) {
        try owner.unlock(range: offsetInMapping..<offsetInMapping + count)
    }
}
