import ArgumentParser
import Shm

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure; every figure is printed beside baselines from the same run.",
        discussion: "Run release builds: `swift run -c release shm bench …`.",
        subcommands: [LatencyBenchCommand.self, ThroughputBenchCommand.self, MmapBenchCommand.self, PubSubBenchCommand.self,
                      RequestResponseBenchCommand.self, LogBenchCommand.self, BridgeBenchCommand.self, InstructionBenchCommand.self]
    )
}

/// Warns when the binary is a debug build, whose figures mean little.
func warnIfDebugBuild() {
    #if DEBUG
    StandardStreams.printError("warning: this is a debug build; benchmark with `swift run -c release shm bench …`")
    #endif
}
