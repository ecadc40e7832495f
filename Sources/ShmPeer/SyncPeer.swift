#if canImport(Glibc)
import Glibc
#endif
import Shm

/// Locks the mutex, half-updates the state it protects, announces it, and hangs.
func mutexLockAndHang(_ name: String) throws {
    let mutex = try SharedMutex.open(name)
    let acquisition = try mutex.lock(timeout: .seconds(10))
    // Protected state: two counters that must be equal outside the lock.
    let data = mutex.segment!.data
    data.storeBytes(of: data.load(fromByteOffset: 1024, as: UInt64.self) + 1, toByteOffset: 1024, as: UInt64.self)
    print("locked \(acquisition)")
    while true { sleep(60) }
}

/// Increments the protected counter pair `rounds` times under the mutex.
func mutexHammer(_ name: String, rounds: Int) throws {
    let mutex = try SharedMutex.open(name)
    let data = mutex.segment!.data
    for _ in 0..<rounds {
        _ = try mutex.lock(timeout: .seconds(30))
        let a = data.load(fromByteOffset: 1024, as: UInt64.self)
        data.storeBytes(of: a + 1, toByteOffset: 1024, as: UInt64.self)
        let b = data.load(fromByteOffset: 1032, as: UInt64.self)
        data.storeBytes(of: b + 1, toByteOffset: 1032, as: UInt64.self)
        try mutex.unlock()
    }
    print("done \(rounds)")
}

/// Waits on the semaphore `count` times, then posts the event.
func semaphoreTake(_ name: String, count: Int) throws {
    let semaphore = try SharedSemaphore.open(name)
    for i in 0..<count {
        guard semaphore.wait(timeout: .seconds(20)) else { throw PayloadError("semaphore wait \(i) timed out") }
    }
    print("took \(count)")
}

/// Waits for the event to be signalled, then prints.
func eventWait(_ name: String) throws {
    let event = try SharedEvent.open(name, waitStrategy: .block)
    let seen = event.sequence
    print("waiting \(seen)")
    guard let now = event.wait(after: seen, timeout: .seconds(20)) else {
        throw PayloadError("event wait timed out")
    }
    print("signalled \(now)")
}
