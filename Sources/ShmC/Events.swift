import CSwiftShm
import Shm

// Events for C (swiftshm.h): notifiers and listeners of an event service.

@_cdecl("shm_event_open")
public func shm_event_open(_ node: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ maxEventID: UInt32,
                           _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    cabi {
        let node = try object(node, Box<Node>.self, "node").value
        let service = try node.event(try string(name, "service"), config: .init(maxEventID: Int(maxEventID)))
        try store(handle(Box(service)), out, "out")
        return SHM_OK
    }
}

@_cdecl("shm_event_free")
public func shm_event_free(_ event: OpaquePointer?) { release(event, Box<EventService>.self) }

@_cdecl("shm_notifier_create")
public func shm_notifier_create(_ event: OpaquePointer?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    cabi {
        try store(handle(Box(try object(event, Box<EventService>.self, "event").value.notifier())), out, "out")
        return SHM_OK
    }
}

@_cdecl("shm_notifier_free")
public func shm_notifier_free(_ notifier: OpaquePointer?) { release(notifier, Box<Notifier>.self) }

@_cdecl("shm_notify")
public func shm_notify(_ notifier: OpaquePointer?, _ id: UInt32) -> Int32 {
    cabi {
        try object(notifier, Box<Notifier>.self, "notifier").value.notify(EventID(Int(id)))
        return SHM_OK
    }
}

@_cdecl("shm_listener_create")
public func shm_listener_create(_ event: OpaquePointer?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    cabi {
        try store(handle(ListenerHandle(try object(event, Box<EventService>.self, "event").value.listener())), out, "out")
        return SHM_OK
    }
}

@_cdecl("shm_listener_free")
public func shm_listener_free(_ listener: OpaquePointer?) { release(listener, ListenerHandle.self) }

/// A C listener: the Swift listener, and the ids that fired but did not fit
/// the caller's array yet (the next call returns them first, without waiting).
final class ListenerHandle {
    let value: Listener
    var pending: [EventID] = []
    init(_ value: Listener) { self.value = value }
}

@_cdecl("shm_listener_wait")
public func shm_listener_wait(_ listener: OpaquePointer?, _ nanoseconds: Int64, _ ids: UnsafeMutablePointer<UInt32>?,
                              _ capacity: UInt32, _ count: UnsafeMutablePointer<UInt32>?) -> Int32 {
    cabi {
        let state = try object(listener, ListenerHandle.self, "listener")
        guard count != nil, ids != nil || capacity == 0 else { throw CABIError.invalid("ids or count is NULL") }
        if state.pending.isEmpty {
            let l = state.value
            state.pending = nanoseconds == 0 ? l.tryWait() : l.wait(timeout: timeout(nanoseconds))
        }
        // Ids past `capacity` stay pending for the next call (they were
        // dropped: the listener had marked them seen).
        let n = min(state.pending.count, Int(capacity))
        for i in 0..<n { ids![i] = UInt32(state.pending[i].value) }
        state.pending.removeFirst(n)
        count!.pointee = UInt32(n)
        return SHM_OK
    }
}
