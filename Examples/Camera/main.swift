// The camera of the README: publishes synthetic 1920×1080 RGB frames on
// "camera.frames" (zero-copy), or receives them (from python/examples/camera.py)
// and prints per-frame statistics. The service is byte slices, the same
// configuration in Swift, C and Python.
//
//   swift run -c release example-camera publish [FRAMES]    # ~30 frames/s
//   swift run -c release example-camera stats [FRAMES]
#if canImport(Glibc)
import Glibc
#endif
import Shm

let width = 1920, height = 1080, frameBytes = width * height * 3
let arguments = CommandLine.arguments.dropFirst()
let mode = arguments.first ?? "publish"
let frames = arguments.dropFirst().first.flatMap { Int($0) } ?? 300

do {
    let node = try Node(name: "camera")
    let service = try node.publishSubscribe("camera.frames", slicesOf: UInt8.self, maxLength: frameBytes,
                                            config: .init(maxPublishers: 8, maxSubscribers: 8, subscriberBufferSize: 8,
                                                          historySize: 0, maxLoans: 4, maxBorrowed: 4, overflow: .overwriteOldest))
    switch mode {
    case "publish":
        let publisher = try service.publisher()
        print("publishing \(frames) frames of \(width)×\(height) RGB on camera.frames")
        for n in 0..<frames {
            let sample = try publisher.loanUninitialized(count: frameBytes)
            let pixels = sample.unsafeBuffer
            // A moving gradient, written straight into shared memory.
            for y in 0..<height {
                let value = UInt8(truncatingIfNeeded: y &+ n)
                let row = pixels.baseAddress! + y * width * 3
                row.initialize(repeating: value, count: width * 3)
            }
            let reached = try sample.assumeInitialized().send()
            if n % 30 == 0 { print("frame \(n) → \(reached) subscriber(s)") }
            usleep(33_000)
        }
    case "stats":
        let subscriber = try service.subscriber()
        print("waiting for frames on camera.frames")
        for _ in 0..<frames {
            let sample = try subscriber.receive(timeout: .seconds(30))
            var sum = 0
            for byte in sample.unsafeBuffer { sum &+= Int(byte) }
            print("frame \(sample.sequence): mean \(Double(sum) / Double(sample.count))")
        }
    default:
        print("usage: example-camera publish|stats [FRAMES]")
    }
} catch {
    print("example-camera: \(error)")
    exit(1)
}
