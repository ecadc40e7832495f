#if canImport(Glibc)
import Glibc
#endif
import Testing
import ShmTestSupport
@testable import Shm

/// A handle's spin budget lives as long as the handle (one waiting engine):
/// waits that had to park shrink it for the next wait, instead of every call
/// starting again at the maximum.
@Suite("Adaptive waits per handle")
struct AdaptiveWaitTests {
    @Test func aListenersSpinBudgetCarriesFromOneWaitToTheNext() throws {
        let node = try Node(name: "adaptive")
        let service = try node.event(TestSupport.uniqueName("adaptive"))
        let policy = SpinPolicy(minimumSpin: .microseconds(2), maximumSpin: .microseconds(40))
        let listener = try service.listener(waitStrategy: .spinThenPark(policy))
        #expect(listener.waiter.spinBudget == 40_000)
        #expect(listener.wait(timeout: .milliseconds(5)).isEmpty) // spins 40 µs, then parks: halves
        #expect(listener.waiter.spinBudget == 20_000)
        #expect(listener.wait(timeout: .milliseconds(5)).isEmpty)
        #expect(listener.waiter.spinBudget == 10_000)
    }

    @Test func aClientsSpinBudgetCarriesFromOneWaitToTheNext() throws {
        let node = try Node(name: "adaptive-rr")
        let service = try node.requestResponse(TestSupport.uniqueName("adaptive-rr"), request: UInt64.self, response: UInt64.self)
        let policy = SpinPolicy(minimumSpin: .microseconds(2), maximumSpin: .microseconds(40))
        let client = try service.client(waitStrategy: .spinThenPark(policy))
        let server = try service.server() // takes the request, never answers
        #expect(client.port.responses.waiter.spinBudget == 40_000)
        let pending = try client.send(1)
        #expect(throws: ServiceError.self) { try pending.response(timeout: .milliseconds(5)) } // no answer: parks, halves
        #expect(client.port.responses.waiter.spinBudget == 20_000)
        #expect(throws: ServiceError.self) { try pending.response(timeout: .milliseconds(5)) }
        #expect(client.port.responses.waiter.spinBudget == 10_000)
        withExtendedLifetime(server) {}
    }

    /// Waits from `async` code run on another thread with the handle's own
    /// waiter, carried there and back (each started at the maximum before).
    @Test func asyncWaitsTeachTheHandlesWaiterToo() async throws {
        let node = try Node(name: "adaptive-async")
        let policy = SpinPolicy(minimumSpin: .microseconds(2), maximumSpin: .microseconds(400))
        let listener = try node.event(TestSupport.uniqueName("adaptive-async")).listener(waitStrategy: .spinThenPark(policy))
        // Each parked slice of a wait halves the budget (a long wait: the
        // peer is quiet), and the next wait starts where the last one ended.
        #expect(try await listener.wait(timeout: .milliseconds(200)).isEmpty)
        let afterFirst = listener.waiter.spinBudget
        #expect(afterFirst <= 200_000)
        #expect(try await listener.wait(timeout: .milliseconds(200)).isEmpty)
        #expect(listener.waiter.spinBudget < afterFirst || listener.waiter.spinBudget == 2_000)
        let samples = try node.publishSubscribe(TestSupport.uniqueName("adaptive-async-ps"), of: UInt64.self)
        let subscriber = try samples.subscriber(waitStrategy: .spinThenPark(policy))
        await #expect(throws: ServiceError.self) { _ = try await subscriber.receive(timeout: .milliseconds(200)) }
        #expect(subscriber.port.waiter.spinBudget < 400_000)
    }

    /// A wait set waits like any port: its strategy set at creation, the
    /// budget learning across waits (it parked at once before), and a
    /// spinning wait set sees a notification without sleeping.
    @Test func aWaitSetSpinsThenParksAndLearns() throws {
        let node = try Node(name: "adaptive-ws")
        let events = try node.event(TestSupport.uniqueName("adaptive-ws"))
        let samples = try node.publishSubscribe(TestSupport.uniqueName("adaptive-ws-ps"), of: UInt64.self)
        let policy = SpinPolicy(minimumSpin: .microseconds(2), maximumSpin: .microseconds(400))
        let waitSet = WaitSet(waitStrategy: .spinThenPark(policy))
        let listener = try events.listener(), notifier = try events.notifier()
        let l = waitSet.attach(listener)
        _ = waitSet.attach(try samples.subscriber())
        #expect(waitSet.waitStrategy == .spinThenPark(policy))
        #expect(waitSet.waiter.spinBudget == 400_000)
        #expect(try waitSet.wait(timeout: .milliseconds(50)).isEmpty)
        #expect(waitSet.waiter.spinBudget == 200_000)
        #expect(try waitSet.wait(timeout: .milliseconds(50)).isEmpty)
        #expect(waitSet.waiter.spinBudget == 100_000)
        try notifier.notify(1)
        #expect(try waitSet.wait(timeout: .seconds(5)) == [l])

        let spinning = WaitSet(waitStrategy: .busySpin)
        let l2 = spinning.attach(listener)
        _ = listener.tryWait()
        let thread = TestThread { usleep(20_000); try? notifier.notify(2) }
        #expect(try spinning.wait(timeout: .seconds(10)) == [l2])
        #expect(listener.event.sleepingWaiters == 0)
        thread.join()

        // Yielding: never parks either, and says so (peers need not wake it).
        let yielding = WaitSet(waitStrategy: .yielding)
        let l3 = yielding.attach(listener)
        _ = listener.tryWait()
        #expect(WaitStrategy.yielding.neverParks && WaitStrategy.busySpin.neverParks)
        #expect(!WaitStrategy.default.neverParks && !WaitStrategy.block.neverParks)
        let other = TestThread { usleep(20_000); try? notifier.notify(3) }
        #expect(try yielding.wait(timeout: .seconds(10)) == [l3])
        #expect(listener.event.sleepingWaiters == 0)
        other.join()
    }
}
