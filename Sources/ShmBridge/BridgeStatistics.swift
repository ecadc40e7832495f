import Synchronization

/// Counters of one bridged service. Each is written by one bridge thread
/// and read by anyone (relaxed: they are statistics, not synchronization).
public final class ServiceStatistics: Sendable {
    public let service: String
    /// Samples (and bytes) sent to NATS.
    let samplesOut = Atomic<UInt64>(0), bytesOut = Atomic<UInt64>(0)
    /// Samples (and bytes) taken from NATS and published here.
    let samplesIn = Atomic<UInt64>(0), bytesIn = Atomic<UInt64>(0)
    /// Samples not sent to NATS: publishing failed (disconnected with a full
    /// reconnect buffer, a payload the server refuses).
    let sendFailures = Atomic<UInt64>(0)
    /// Samples from NATS dropped here: another payload type, a malformed
    /// message, a part of a split sample missing, a duplicate (same
    /// publisher, sequence not newer), or refused by the local service
    /// (overflow policy, no subscriber under `discard`).
    let typeMismatches = Atomic<UInt64>(0), malformed = Atomic<UInt64>(0), incomplete = Atomic<UInt64>(0),
        duplicates = Atomic<UInt64>(0), localDrops = Atomic<UInt64>(0)
    /// Samples this bridge itself published here, not sent back (loops).
    let loopsSkipped = Atomic<UInt64>(0)

    init(service: String) { self.service = service }

    static func add(_ counter: borrowing Atomic<UInt64>, _ value: UInt64 = 1) {
        counter.wrappingAdd(value, ordering: .relaxed)
    }

    /// A snapshot.
    public var counts: [(String, UInt64)] {
        [("out", samplesOut.load(ordering: .relaxed)), ("out_bytes", bytesOut.load(ordering: .relaxed)),
         ("in", samplesIn.load(ordering: .relaxed)), ("in_bytes", bytesIn.load(ordering: .relaxed)),
         ("send_failures", sendFailures.load(ordering: .relaxed)), ("type_mismatches", typeMismatches.load(ordering: .relaxed)),
         ("malformed", malformed.load(ordering: .relaxed)), ("incomplete", incomplete.load(ordering: .relaxed)),
         ("duplicates", duplicates.load(ordering: .relaxed)), ("local_drops", localDrops.load(ordering: .relaxed)),
         ("loops_skipped", loopsSkipped.load(ordering: .relaxed))]
    }

    public subscript(_ name: String) -> UInt64 { counts.first { $0.0 == name }?.1 ?? 0 }
}
