#if canImport(Glibc)
import Glibc
#endif
import Testing
import MetricsTestKit
import Shm
import ShmMetrics
import ShmTestSupport

/// The operator's view: counters a sampler reads from shared memory (what
/// another process counted), and events the library logs and counts.
@Suite("Metrics and logging")
struct MetricsAndLoggingTests {
    /// "Pool in use": samples subscribers hold (queued or borrowed), from
    /// shared-memory counters only — delivered − returned, − what
    /// overwrite-oldest dropped.
    @Test func poolSamplesInUseFollowWhatSubscribersHold() throws {
        let node = try Node(name: "metrics-held")
        for policy in [OverflowPolicy.block, .overwriteOldest] {
            let name = TestSupport.uniqueName("held")
            let service = try testService(node, name, buffer: 4, overflow: policy)
            let subscriber = try service.subscriber()
            let publisher = try service.publisher(sendTimeout: .zero)
            for i in 0..<6 { try publisher.loanUninitialized().write(TestSample(producer: 1, sequence: UInt64(i))).send() }
            // block: 4 queued (2 timed out, never delivered); overwrite: the newest 4.
            let first = try subscriber.receive(timeout: .seconds(1)), second = try subscriber.receive(timeout: .seconds(1))
            var held = try ServiceDirectory.inspect(name).ports.first { $0.kind == "subscriber" }?.held
            #expect(held == 4, "\(policy): 2 borrowed + 2 queued, got \(String(describing: held))")
            let metrics = TestMetrics()
            MetricsSampler(services: { $0 == name }, factory: metrics).sample()
            #expect(try metrics.expectGauge("shm_service_pool_samples_in_use", [("service", name)]).lastValue == 4)
            _ = consume first
            _ = consume second
            while let sample = try subscriber.tryReceive() { _ = consume sample }
            held = try ServiceDirectory.inspect(name).ports.first { $0.kind == "subscriber" }?.held
            #expect(held == 0, "\(policy): everything handed back, got \(String(describing: held))")
            withExtendedLifetime(publisher) {}
        }
    }

    @Test func theSamplerReportsWhatAnotherProcessCounted() throws {
        let name = TestSupport.uniqueName("metrics")
        let node = try Node(name: "metrics-test")
        let service = try testService(node, name, buffer: 64)
        let subscriber = try service.subscriber()
        let publisher = try TestSupport.spawnPeer(["ps-pub", name, "7", "500", "1"])
        defer { publisher.kill(SIGKILL); _ = try? publisher.wait(timeout: .seconds(10)) }
        for sequence in 0..<500 {
            let sample = try subscriber.receive(timeout: .seconds(20))
            #expect(sample.payload.sequence == UInt64(sequence))
        }
        let metrics = TestMetrics()
        let sampler = MetricsSampler(services: { $0 == name }, factory: metrics)
        sampler.sample()
        let dimensions = [("service", name)]
        #expect(metrics.counterTotal(label: "shm_publisher_samples_sent_total", dimensions: dimensions) == 500)
        #expect(metrics.counterTotal(label: "shm_subscriber_samples_delivered_total", dimensions: dimensions) == 500)
        #expect(metrics.counterTotal(label: "shm_subscriber_samples_lost_total", dimensions: dimensions) == 0)
        #expect(try metrics.expectGauge("shm_subscriber_backlog_samples", dimensions).lastValue == 0)
        #expect(try metrics.expectGauge("shm_service_pool_samples_in_use", dimensions).lastValue == 0)
        #expect(try metrics.expectGauge("shm_service_ports", dimensions + [("kind", "publisher")]).lastValue == 1)
        #expect(try metrics.expectGauge("shm_service_ports", dimensions + [("kind", "subscriber")]).lastValue == 1)
        // The service segment, the publisher's pool and our inbox, at least.
        let memory = try metrics.expectGauge("shm_service_memory_bytes", dimensions).lastValue ?? 0
        #expect(memory >= Double(3 * 4096), "\(memory)")
        // A second sample adds only what grew: nothing here.
        sampler.sample()
        #expect(metrics.counterTotal(label: "shm_publisher_samples_sent_total", dimensions: dimensions) == 500)
        #expect(metrics.counterTotal(label: "shm_subscriber_samples_delivered_total", dimensions: dimensions) == 500)
        // The same numbers `shm service` shows.
        let info = try ServiceDirectory.inspect(name)
        #expect(info.ports.first { $0.kind == "publisher" }?.sent == 500)
        #expect(info.ports.first { $0.kind == "subscriber" }?.delivered == 500)
        #expect(info.memoryBytes == Int(memory))
    }

    @Test func reclaimingADeadProcessesPortIsLoggedAndCounted() throws {
        CapturedDiagnostics.install()
        try TestSupport.aroundDeadPeers {
            let name = TestSupport.uniqueName("reclaim-log")
            let peer = try TestSupport.spawnPeer(["ps-pub-forever", name, "3", "1000", "0"])
            let line = try peer.readLine(timeout: .seconds(20)) ?? ""
            #expect(line.hasPrefix("publisher "), "\(line)")
            peer.kill(SIGKILL)
            _ = try peer.wait(timeout: .seconds(10))
            #expect(CapturedDiagnostics.lines(where: "service", is: name).isEmpty)
            _ = ServiceDirectory.cleanup()
            let lines = CapturedDiagnostics.lines(where: "service", is: name)
            let publisher = lines.filter { $0.metadata["port"] == "publisher" }
            #expect(publisher.count == 1 && publisher.first?.level == .notice, "\(lines)")
            #expect(publisher.first?.metadata["process"]?.contains("\(peer.pid)") == true
                    || publisher.first?.metadata["process"]?.hasPrefix("lease") == true, "\(publisher)")
            #expect(CapturedDiagnostics.metrics.counterTotal(label: "shm_ports_reclaimed_total",
                                                             dimensions: [("service", name), ("kind", "publisher")]) == 1)
        }
    }
}
