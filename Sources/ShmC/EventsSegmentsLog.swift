import CSwiftShm
import Shm
import ShmLog

// Events, named segments and the persistent log for C (swiftshm.h).

final class RecordHandle {
    let bytes: UnsafeMutableRawBufferPointer
    init(copying source: UnsafeRawBufferPointer) {
        bytes = .allocate(byteCount: max(1, source.count), alignment: 16)
        if let base = source.baseAddress { bytes.baseAddress!.copyMemory(from: base, byteCount: source.count) }
    }
    deinit { bytes.deallocate() }
}

// MARK: Events

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
        try store(handle(Box(try object(event, Box<EventService>.self, "event").value.listener())), out, "out")
        return SHM_OK
    }
}

@_cdecl("shm_listener_free")
public func shm_listener_free(_ listener: OpaquePointer?) { release(listener, Box<Listener>.self) }

@_cdecl("shm_listener_wait")
public func shm_listener_wait(_ listener: OpaquePointer?, _ nanoseconds: Int64, _ ids: UnsafeMutablePointer<UInt32>?,
                              _ capacity: UInt32, _ count: UnsafeMutablePointer<UInt32>?) -> Int32 {
    cabi {
        let l = try object(listener, Box<Listener>.self, "listener").value
        guard count != nil, ids != nil || capacity == 0 else { throw CABIError.invalid("ids or count is NULL") }
        let fired = nanoseconds == 0 ? l.tryWait() : l.wait(timeout: timeout(nanoseconds))
        let n = min(fired.count, Int(capacity))
        for i in 0..<n { ids![i] = UInt32(fired[i].value) }
        count!.pointee = UInt32(n)
        return SHM_OK
    }
}

// MARK: Segments

@_cdecl("shm_segment_create")
public func shm_segment_create(_ name: UnsafePointer<CChar>?, _ bytes: UInt64, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    cabi {
        guard bytes >= 1, bytes <= UInt64(Int.max) else { throw CABIError.invalid("size \(bytes)") }
        let segment = try SharedMemorySegment.create(try string(name, "name"), size: Int(bytes), lifetime: .persistent)
        try store(handle(Box(segment)), out, "out")
        return SHM_OK
    }
}

@_cdecl("shm_segment_open")
public func shm_segment_open(_ name: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    cabi {
        let segment = try SharedMemorySegment.open(try string(name, "name"))
        try store(handle(Box(segment)), out, "out")
        return SHM_OK
    }
}

@_cdecl("shm_segment_free")
public func shm_segment_free(_ segment: OpaquePointer?) { release(segment, Box<SharedMemorySegment>.self) }

@_cdecl("shm_segment_data")
public func shm_segment_data(_ segment: OpaquePointer?) -> UnsafeMutableRawPointer? {
    (try? object(segment, Box<SharedMemorySegment>.self, "segment"))?.value.data.unsafeBaseAddress
}

@_cdecl("shm_segment_size")
public func shm_segment_size(_ segment: OpaquePointer?) -> UInt64 {
    (try? object(segment, Box<SharedMemorySegment>.self, "segment")).map { UInt64($0.value.data.count) } ?? 0
}

@_cdecl("shm_segment_unlink")
public func shm_segment_unlink(_ name: UnsafePointer<CChar>?) -> Int32 {
    cabi {
        try SharedMemorySegment.unlink(try SegmentName(try string(name, "name")))
        return SHM_OK
    }
}

// MARK: Log

@_cdecl("shm_log_open")
public func shm_log_open(_ directory: UnsafePointer<CChar>?, _ segmentBytes: UInt64, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    cabi {
        let path = try string(directory, "directory")
        let config = segmentBytes == 0 ? LogConfig() : LogConfig(segmentSize: Int(clamping: segmentBytes))
        let log = try Log.openOrCreate(directory: path, config: config)
        try store(handle(Box(log)), out, "out")
        return SHM_OK
    }
}

@_cdecl("shm_log_free")
public func shm_log_free(_ log: OpaquePointer?) { release(log, Box<Log>.self) }

@_cdecl("shm_appender_create")
public func shm_appender_create(_ log: OpaquePointer?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    cabi {
        try store(handle(Box(try object(log, Box<Log>.self, "log").value.appender())), out, "out")
        return SHM_OK
    }
}

@_cdecl("shm_appender_free")
public func shm_appender_free(_ appender: OpaquePointer?) { release(appender, Box<LogAppender>.self) }

@_cdecl("shm_append")
public func shm_append(_ appender: OpaquePointer?, _ data: UnsafeRawPointer?, _ bytes: UInt64,
                       _ sequence: UnsafeMutablePointer<UInt64>?) -> Int32 {
    cabi {
        let a = try object(appender, Box<LogAppender>.self, "appender").value
        guard data != nil || bytes == 0 else { throw CABIError.invalid("data is NULL") }
        let record = try a.append(UnsafeRawBufferPointer(start: data, count: Int(clamping: bytes)))
        sequence?.pointee = record.sequence
        return SHM_OK
    }
}

@_cdecl("shm_tailer_create")
public func shm_tailer_create(_ log: OpaquePointer?, _ from: UInt64, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    cabi {
        let l = try object(log, Box<Log>.self, "log").value
        let start: TailStart = from == 0 ? .start : from == UInt64.max ? .end : .sequence(from)
        try store(handle(Box(try l.tailer(from: start))), out, "out")
        return SHM_OK
    }
}

@_cdecl("shm_tailer_free")
public func shm_tailer_free(_ tailer: OpaquePointer?) { release(tailer, Box<LogTailer>.self) }

@_cdecl("shm_tailer_next")
public func shm_tailer_next(_ tailer: OpaquePointer?, _ nanoseconds: Int64, _ record: UnsafeMutablePointer<OpaquePointer?>?,
                            _ data: UnsafeMutablePointer<UnsafeRawPointer?>?, _ bytes: UnsafeMutablePointer<UInt64>?,
                            _ sequence: UnsafeMutablePointer<UInt64>?, _ timestamp: UnsafeMutablePointer<UInt64>?) -> Int32 {
    cabi {
        let t = try object(tailer, Box<LogTailer>.self, "tailer").value
        guard record != nil, data != nil, bytes != nil else { throw CABIError.invalid("record, data or bytes is NULL") }
        let copy: (RecordHandle, UInt64, UInt64)
        if nanoseconds == 0 {
            guard let next = try t.tryNext() else { return failure(SHM_E_TIMED_OUT, "no record waiting") }
            copy = next.bytes.withUnsafeBytes { (RecordHandle(copying: $0), next.sequence, next.timestamp) }
        } else {
            copy = try t.withNext(timeout: timeout(nanoseconds)) { view in
                (RecordHandle(copying: view.bytes), view.sequence, view.timestamp)
            }
        }
        record!.pointee = handle(copy.0)
        data!.pointee = UnsafeRawPointer(copy.0.bytes.baseAddress)
        bytes!.pointee = UInt64(copy.0.bytes.count)
        sequence?.pointee = copy.1
        timestamp?.pointee = copy.2
        return SHM_OK
    }
}

@_cdecl("shm_record_free")
public func shm_record_free(_ record: OpaquePointer?) { release(record, RecordHandle.self) }
