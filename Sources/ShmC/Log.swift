import CSwiftShm
import Shm
import ShmLog

// The persistent log for C (swiftshm.h): appenders, claims, tailers.

final class RecordHandle {
    let bytes: UnsafeMutableRawBufferPointer
    init(copying source: UnsafeRawBufferPointer) {
        bytes = .allocate(byteCount: max(1, source.count), alignment: 16)
        if let base = source.baseAddress { bytes.baseAddress!.copyMemory(from: base, byteCount: source.count) }
    }
    deinit { bytes.deallocate() }
}

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
        try store(handle(AppenderHandle(try object(log, Box<Log>.self, "log").value.appender())), out, "out")
        return SHM_OK
    }
}

@_cdecl("shm_appender_free")
public func shm_appender_free(_ appender: OpaquePointer?) { release(appender, AppenderHandle.self) }

final class AppenderHandle {
    let appender: LogAppender
    /// A claim of this appender is outstanding (one at a time).
    var claimed = false
    init(_ appender: LogAppender) { self.appender = appender }
}

@_cdecl("shm_append")
public func shm_append(_ appender: OpaquePointer?, _ data: UnsafeRawPointer?, _ bytes: UInt64,
                       _ sequence: UnsafeMutablePointer<UInt64>?) -> Int32 {
    cabi {
        let a = try object(appender, AppenderHandle.self, "appender").appender
        guard data != nil || bytes == 0 else { throw CABIError.invalid("data is NULL") }
        let record = try a.append(UnsafeRawBufferPointer(start: data, count: Int(clamping: bytes)))
        sequence?.pointee = record.sequence
        return SHM_OK
    }
}

/// A claim handed to C: the claim (nil once committed or aborted) and the
/// appender it holds busy.
final class ClaimHandle {
    var claim: LogClaim?
    let owner: AppenderHandle
    init(_ claim: consuming LogClaim, owner: AppenderHandle) {
        self.claim = consume claim
        self.owner = owner
    }
    deinit { owner.claimed = false } // an uncommitted claim's deinit leaves a skip record
}

@_cdecl("shm_appender_claim")
public func shm_appender_claim(_ appender: OpaquePointer?, _ bytes: UInt64, _ claim: UnsafeMutablePointer<OpaquePointer?>?,
                               _ data: UnsafeMutablePointer<UnsafeMutableRawPointer?>?,
                               _ sequence: UnsafeMutablePointer<UInt64>?) -> Int32 {
    cabi {
        let owner = try object(appender, AppenderHandle.self, "appender")
        guard claim != nil, data != nil else { throw CABIError.invalid("claim or data is NULL") }
        guard !owner.claimed else { throw CABIError.state("the appender holds a claim: commit or abort it first") }
        guard bytes <= UInt64(Int.max) else { throw CABIError.invalid("a claim of \(bytes) bytes") }
        let claimed = try owner.appender.claim(count: Int(bytes))
        let address = claimed.unsafeBytes.baseAddress
        sequence?.pointee = claimed.sequence
        owner.claimed = true
        claim!.pointee = handle(ClaimHandle(claimed, owner: owner))
        data!.pointee = address
        return SHM_OK
    }
}

@_cdecl("shm_claim_commit")
public func shm_claim_commit(_ claim: OpaquePointer?, _ sequence: UnsafeMutablePointer<UInt64>?) -> Int32 {
    cabi {
        let box = try object(claim, ClaimHandle.self, "claim")
        defer { release(claim, ClaimHandle.self) }
        guard let claimed = box.claim.take() else { throw CABIError.state("the claim was already committed") }
        let record = try claimed.commit()
        sequence?.pointee = record.sequence
        return SHM_OK
    }
}

@_cdecl("shm_claim_abort")
public func shm_claim_abort(_ claim: OpaquePointer?) { release(claim, ClaimHandle.self) }

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
                (RecordHandle(copying: view.unsafeBytes), view.sequence, view.timestamp)
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
