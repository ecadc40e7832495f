// swift-tools-version: 6.1
//
// swift-shm — memory-mapped I/O and shared-memory IPC for Swift on Linux.
// Layering (see DESIGN.md): CShm → ShmSystem → ShmPrimitives → Shm / ShmLog → ShmCLI.

import Foundation
import PackageDescription

/// The NATS bridge needs the official C client (Debian: libnats-dev). Where
/// it is absent the package builds without the bridge; SWIFTSHM_NATS=0 or 1
/// overrides the detection.
let hasNATS: Bool = {
    if let forced = ProcessInfo.processInfo.environment["SWIFTSHM_NATS"] { return forced == "1" }
    return ["/usr/include/nats/nats.h", "/usr/local/include/nats/nats.h"].contains { FileManager.default.fileExists(atPath: $0) }
}()

let strict: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
]

let package = Package(
    name: "swift-shm",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "Shm", targets: ["Shm"]),
        .library(name: "ShmLog", targets: ["ShmLog"]),
        .library(name: "ShmReplay", targets: ["ShmReplay"]),
        .library(name: "ShmMetrics", targets: ["ShmMetrics"]),
        // The C ABI (include: Sources/CSwiftShm/include/swiftshm.h): libswiftshm.so.
        .library(name: "swiftshm", type: .dynamic, targets: ["ShmC"]),
        .executable(name: "shm", targets: ["ShmCLI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        // `swift package generate-documentation --target Shm` (DocC catalogs in Sources/*/*.docc).
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
    ],
    targets: [
        // What Swift cannot call: variadic syscalls, cmsg macros, _GNU_SOURCE things.
        .target(name: "CShm"),
        // C the tools need and the library does not: benchmark baselines
        // (POSIX message queues, pipe2) and libFuzzer's driver.
        .target(name: "CShmTools"),
        // Typed, throwing wrappers over the OS: mappings, segments, futexes, processes.
        // Operator events through swift-log (`ShmLogging.logger`, silent unless
        // set) and swift-metrics counters (`Diagnostics`); swift-system's
        // FileDescriptor and Errno where descriptors and errnos cross the API.
        .target(name: "ShmSystem", dependencies: ["CShm", .product(name: "Logging", package: "swift-log"),
                                                 .product(name: "CoreMetrics", package: "swift-metrics"),
                                                 .product(name: "SystemPackage", package: "swift-system")],
                swiftSettings: strict),
        // Data structures laid out in raw shared memory: rings, queues, futex primitives.
        .target(name: "ShmPrimitives", dependencies: ["ShmSystem"], swiftSettings: strict),
        // Public API; re-exports the layers below it.
        .target(name: "Shm", dependencies: ["ShmSystem", "ShmPrimitives", .product(name: "SystemPackage", package: "swift-system")],
                swiftSettings: strict),
        // Persistent append-only memory-mapped log: segments, index, tailers, recovery, retention.
        .target(name: "ShmLog", dependencies: ["ShmSystem", "ShmPrimitives", .product(name: "SystemPackage", package: "swift-system")],
                swiftSettings: strict),
        // Services' and logs' counters, read from shared memory and reported
        // through swift-metrics (any backend: swift-prometheus, swift-otel).
        .target(name: "ShmMetrics", dependencies: ["Shm", "ShmLog", "ShmSystem", .product(name: "CoreMetrics", package: "swift-metrics")],
                swiftSettings: strict),
        // Recording a service into a log, and replay-then-live subscribers.
        .target(name: "ShmReplay", dependencies: ["Shm", "ShmLog", "ShmSystem"], swiftSettings: strict),
        // The C ABI's public header, as a module ShmC can import.
        .target(name: "CSwiftShm"),
        // The C ABI: @_cdecl functions over Shm and ShmLog (swiftshm.h).
        .target(name: "ShmC", dependencies: ["Shm", "ShmLog", "CSwiftShm", "CShm"], swiftSettings: strict),
        // The `shm` command-line tool (`shm bridge` where the bridge is built).
        .executableTarget(
            name: "ShmCLI",
            dependencies: [
                "Shm",
                "ShmLog",
                "ShmReplay",
                "CShmTools",
                "ShmMetrics",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ] + (hasNATS ? ["ShmBridge"] : []),
            swiftSettings: strict
        ),
        // "The other process" that multi-process tests spawn.
        .executableTarget(name: "ShmPeer", dependencies: ["Shm", "ShmPrimitives", "ShmLog", "ShmTestSupport"],
                          swiftSettings: strict),
        // Fuzz targets for every decoder of untrusted bytes: a corpus replayer in
        // normal builds, a libFuzzer binary when built by Fuzz/run (see there).
        .executableTarget(name: "shm-fuzz", dependencies: ["Shm", "ShmLog", "ShmPrimitives", "ShmSystem", "ShmReplay", "CShmTools"], swiftSettings: strict),
        // Runnable examples the README points to (`swift run example-pubsub`, …).
        .executableTarget(name: "example-pubsub", dependencies: ["Shm"], path: "Examples/PublishSubscribe", swiftSettings: strict),
        .executableTarget(name: "example-request-response", dependencies: ["Shm"], path: "Examples/RequestResponse", swiftSettings: strict),
        .executableTarget(name: "example-events", dependencies: ["Shm"], path: "Examples/Events", swiftSettings: strict),
        .executableTarget(name: "example-camera", dependencies: ["Shm"], path: "Examples/Camera", swiftSettings: strict),
        // The DocC articles' code, compiled and run by DocExamplesTests.
        .executableTarget(name: "doc-examples", dependencies: ["Shm", "ShmLog"], path: "Examples/DocExamples", swiftSettings: strict),
        // The README's code, compiled with the package (never run: fragments of
        // two processes); ReadmeExamplesTests checks it is the README's, verbatim.
        .executableTarget(name: "readme-examples",
                          dependencies: ["Shm", "ShmLog", "ShmMetrics", .product(name: "Logging", package: "swift-log"),
                                         .product(name: "Metrics", package: "swift-metrics"),
                                         .product(name: "Prometheus", package: "swift-prometheus"),
                                         .product(name: "SystemPackage", package: "swift-system")],
                          path: "Examples/ReadmeExamples", swiftSettings: strict),
        .executableTarget(name: "example-metrics",
                          dependencies: ["Shm", "ShmMetrics", .product(name: "Logging", package: "swift-log"),
                                         .product(name: "Metrics", package: "swift-metrics"),
                                         .product(name: "Prometheus", package: "swift-prometheus")],
                          path: "Examples/Metrics", swiftSettings: strict),
        // Test-only helpers: fork-based checks done entirely in C (see the header).
        .target(name: "CShmTestSupport", path: "Tests/CShmTestSupport"),
        .target(
            name: "ShmTestSupport",
            dependencies: ["Shm", "CShmTestSupport", .product(name: "Logging", package: "swift-log"),
                           .product(name: "CoreMetrics", package: "swift-metrics"),
                           .product(name: "MetricsTestKit", package: "swift-metrics")],
            path: "Tests/ShmTestSupport",
            swiftSettings: strict
        ),
        .testTarget(
            name: "ShmSystemTests",
            dependencies: ["ShmSystem", "CShm", "ShmTestSupport", "ShmPeer", .product(name: "SystemPackage", package: "swift-system")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "ShmPrimitivesTests",
            dependencies: ["Shm", "ShmSystem", "ShmPrimitives", "ShmTestSupport", "CShmTestSupport", "ShmPeer"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "ShmServicesTests",
            dependencies: ["Shm", "ShmSystem", "ShmPrimitives", "ShmMetrics", "ShmTestSupport", "CShmTestSupport", "ShmPeer",
                           .product(name: "MetricsTestKit", package: "swift-metrics")],
            swiftSettings: strict
        ),
        .testTarget(name: "ShmReplayTests", dependencies: ["ShmReplay", "Shm", "ShmLog", "ShmTestSupport", "ShmPeer", "ShmCLI"],
                    swiftSettings: strict),
        .testTarget(
            name: "ShmLogTests",
            dependencies: ["ShmLog", "Shm", "ShmSystem", "ShmTestSupport", "CShmTestSupport", "ShmPeer",
                           .product(name: "MetricsTestKit", package: "swift-metrics")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "ShmCLITests",
            dependencies: ["Shm", "ShmSystem", "ShmTestSupport", "ShmPeer", "ShmCLI", "shm-fuzz",
                           "example-pubsub", "example-request-response", "example-events", "example-camera", "example-metrics", "doc-examples",
                           "readme-examples"],
            swiftSettings: strict
        ),
    ]
)

if hasNATS {
    package.products.append(.library(name: "ShmBridge", targets: ["ShmBridge"]))
    package.targets += [
        // The official NATS C client (libnats-dev), through pkg-config.
        .systemLibrary(name: "CNats", pkgConfig: "libnats", providers: [.apt(["libnats-dev"])]),
        // Services and logs to and from NATS: the bridge behind `shm bridge`.
        .target(name: "ShmBridge", dependencies: ["Shm", "ShmLog", "ShmSystem", "CNats"], swiftSettings: strict),
        .testTarget(name: "ShmBridgeTests", dependencies: ["ShmBridge", "Shm", "ShmLog", "ShmTestSupport", "ShmPeer", "ShmCLI"],
                    swiftSettings: strict),
    ]
}
