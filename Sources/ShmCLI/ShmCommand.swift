import ArgumentParser
import Shm

/// `shm` — create, inspect, clean up, exercise and benchmark shared memory.
@main
struct ShmCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shm",
        abstract: "Shared memory and memory-mapped I/O for Linux, from swift-shm.",
        discussion: """
            Segments are named per user: `shm create frames` makes /dev/shm/swiftshm.<uid>.frames.
            Sizes accept 4096, 64KiB, 1MiB, 2GiB (binary) or 10kB, 3MB (decimal).
            Add --json to data commands for machine-readable output.
            """,
        subcommands: [
            ListCommand.self, CreateCommand.self, StatCommand.self, RemoveCommand.self, ServiceCommand.self,
            PubCommand.self, SubCommand.self, HzCommand.self, MetricsCommand.self, CleanupCommand.self, LogCommand.self, RecordCommand.self, BridgeCommand.self,
            DemoCommand.self, BenchCommand.self, DemoPeerCommand.self, BenchPeerCommand.self, LogBenchPeerCommand.self,
        ]
    )
}

/// A size option (`64KiB`, `1MiB`, …); parse with `Size.parse` so a bad
/// value reports why.
struct Size: Sendable, CustomStringConvertible {
    let bytes: Int
    init(bytes: Int) { self.bytes = bytes }
    var description: String { ByteCount.format(bytes) }

    /// For `@Option(transform: Size.parse)`.
    static func parse(_ text: String) throws -> Size {
        do {
            return Size(bytes: try ByteCount.parse(text))
        } catch {
            throw ValidationError(error.description)
        }
    }
}

/// The error a command reports on stderr with a non-zero exit status.
struct CommandFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Runs `body`, turning a library error into a clean one-line failure.
func reporting<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let error as ExitCode {
        throw error
    } catch let error as CommandFailure {
        throw error
    } catch {
        throw CommandFailure("\(error)")
    }
}
