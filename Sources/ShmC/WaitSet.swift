import CSwiftShm
import Shm

// Wait sets for C (swiftshm.h): several subscribers, listeners and servers
// waited on at once, and a descriptor for the caller's own event loop.

final class WaitSetHandle {
    let waitSet = WaitSet()
    /// The ports attached, kept alive as long as the set.
    var attached: [AnyObject] = []
    var readiness: Readiness?
}

private func attach(_ waitset: OpaquePointer?, _ index: UnsafeMutablePointer<UInt32>?,
                    _ body: (WaitSetHandle) throws -> WaitSet.Attachment) -> Int32 {
    cabi {
        let owner = try object(waitset, WaitSetHandle.self, "waitset")
        guard owner.waitSet.count < 127 else { throw CABIError.invalid("a wait set holds at most 127 attachments") }
        let attachment = try body(owner)
        index?.pointee = UInt32(attachment.index)
        return SHM_OK
    }
}

@_cdecl("shm_waitset_create")
public func shm_waitset_create(_ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    cabi {
        try store(handle(WaitSetHandle()), out, "out")
        return SHM_OK
    }
}

@_cdecl("shm_waitset_free")
public func shm_waitset_free(_ waitset: OpaquePointer?) { release(waitset, WaitSetHandle.self) }

@_cdecl("shm_waitset_attach_subscriber")
public func shm_waitset_attach_subscriber(_ waitset: OpaquePointer?, _ subscriber: OpaquePointer?,
                                          _ index: UnsafeMutablePointer<UInt32>?) -> Int32 {
    attach(waitset, index) { owner in
        let s = try object(subscriber, SubscriberHandle.self, "subscriber")
        owner.attached.append(s)
        return owner.waitSet.attach(s.subscriber)
    }
}

@_cdecl("shm_waitset_attach_listener")
public func shm_waitset_attach_listener(_ waitset: OpaquePointer?, _ listener: OpaquePointer?,
                                        _ index: UnsafeMutablePointer<UInt32>?) -> Int32 {
    attach(waitset, index) { owner in
        let l = try object(listener, ListenerHandle.self, "listener")
        owner.attached.append(l)
        return owner.waitSet.attach(l.value)
    }
}

@_cdecl("shm_waitset_attach_server")
public func shm_waitset_attach_server(_ waitset: OpaquePointer?, _ server: OpaquePointer?,
                                      _ index: UnsafeMutablePointer<UInt32>?) -> Int32 {
    attach(waitset, index) { owner in
        let s = try object(server, ServerHandle.self, "server")
        owner.attached.append(s)
        return owner.waitSet.attach(s.port, keepAlive: s)
    }
}

@_cdecl("shm_waitset_wait")
public func shm_waitset_wait(_ waitset: OpaquePointer?, _ nanoseconds: Int64, _ ready: UnsafeMutablePointer<UInt32>?,
                             _ capacity: UInt32, _ count: UnsafeMutablePointer<UInt32>?) -> Int32 {
    cabi {
        let owner = try object(waitset, WaitSetHandle.self, "waitset")
        guard count != nil, ready != nil || capacity == 0 else { throw CABIError.invalid("ready or count is NULL") }
        let found = try owner.waitSet.wait(timeout: timeout(nanoseconds))
        let n = min(found.count, Int(capacity))
        for i in 0..<n { ready![i] = UInt32(found[i].index) }
        count!.pointee = UInt32(n)
        return SHM_OK
    }
}

@_cdecl("shm_waitset_fd")
public func shm_waitset_fd(_ waitset: OpaquePointer?, _ fd: UnsafeMutablePointer<Int32>?) -> Int32 {
    cabi {
        let owner = try object(waitset, WaitSetHandle.self, "waitset")
        if owner.readiness == nil { owner.readiness = try owner.waitSet.makeReadiness() }
        try store(owner.readiness!.fileDescriptor, fd, "fd")
        return SHM_OK
    }
}

@_cdecl("shm_waitset_rearm")
public func shm_waitset_rearm(_ waitset: OpaquePointer?) -> Int32 {
    cabi {
        try object(waitset, WaitSetHandle.self, "waitset").readiness?.rearm()
        return SHM_OK
    }
}
