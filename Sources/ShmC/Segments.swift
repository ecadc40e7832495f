import CSwiftShm
import Shm

// Named shared-memory segments for C (swiftshm.h).

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
