import Synchronization

/// An atomic word inside shared memory (`Atomic<UInt32>` for futex words,
/// `Atomic<UInt64>` for indices), bounds- and alignment-checked once when
/// made. It keeps its mapping alive.
///
/// Use it through `atomic.pointee`, which is the standard library's `Atomic`,
/// so the compiler checks at each call that the ordering is a constant
/// spelled out at the call site (the `Synchronization` module refuses
/// orderings passed through as parameters, which is why this type does not
/// wrap the operations):
///
/// ```swift
/// let turn = SharedAtomic<UInt32>(segment.data, offset: 0)
/// // SYNC POINT: release pairs with the acquire load in the reader.
/// turn.unsafeAtomic.pointee.store(1, ordering: .releasing)
/// ```
///
/// Callers that pair a `.releasing` store with an `.acquiring` load mark both
/// ends with a `// SYNC POINT:` comment naming the partner.
public struct SharedAtomic<Value: AtomicRepresentable>: @unchecked Sendable {
    public let owner: MemoryMapping
    /// The atomic in shared memory. Valid while `owner` lives, which this
    /// value guarantees for as long as it exists. (`Atomic`'s operations
    /// take their ordering as a compile-time constant, so they are called
    /// on `pointee` rather than forwarded.)
    public let unsafeAtomic: UnsafeMutablePointer<Atomic<Value>>

    @available(*, deprecated, renamed: "unsafeAtomic")
    public var atomic: UnsafeMutablePointer<Atomic<Value>> { unsafeAtomic }

    /// The atomic at `offset` of `bytes`, which must be naturally aligned.
    public init(_ bytes: MappedBytes, offset: Int) {
        precondition(offset >= 0 && offset <= bytes.count - MemoryLayout<Value>.size,
                     "atomic at \(offset) outside a view of \(bytes.count) bytes")
        let address = bytes.unsafeBaseAddress + offset
        precondition(Int(bitPattern: address) % MemoryLayout<Value>.alignment == 0, "misaligned atomic at \(offset)")
        precondition(bytes.owner.access != .copyOnWrite, "atomics in a private mapping are not shared")
        self.owner = bytes.owner
        self.unsafeAtomic = UnsafeMutablePointer(OpaquePointer(address))
    }

    /// The word's address, for futex calls. Valid while `owner` lives.
    @inlinable public var unsafeAddress: UnsafeMutableRawPointer { UnsafeMutableRawPointer(unsafeAtomic) }
}
