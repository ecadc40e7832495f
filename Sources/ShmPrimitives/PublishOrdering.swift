/// How a producer's store publishes an entry to its consumer.
///
/// - `release`: enough when the consumer never sleeps (it busy-spins or
///   polls): its acquire load of the entry sees everything written before.
/// - `sequentiallyConsistent`: needed when the consumer may sleep on a
///   `Parker`: the store must not pass the producer's following load of
///   `sleepers` (the Dekker pair with `Parker.sleep`), or a wake-up is lost.
///
/// Always passed explicitly: the cheaper one is right only when the caller
/// knows its consumer does not sleep.
public enum PublishOrdering: Sendable, Equatable {
    case release
    case sequentiallyConsistent

    /// `.sequentiallyConsistent` if the consumer may sleep, else `.release`.
    @inlinable
    public static func forConsumer(mayPark: Bool) -> PublishOrdering { mayPark ? .sequentiallyConsistent : .release }
}
