// Events between two processes, and a wait set.
//
//   swift run example-events
//
// A notifier signals event ids; listeners wake on a futex (no polling, no
// syscall on the notifying side when nobody sleeps). The child process
// waits on a WaitSet holding its listener, with a timeout.

import Shm

let commands = "example.events.commands"
let replies = "example.events.replies"

enum Command {
    static let hello: EventID = 1
    static let work: EventID = 2
    static let stop: EventID = 3
}

func child() throws {
    let node = try Node(name: "example-events-child")
    let listener = try node.event(commands).listener()
    let acknowledge = try node.event(replies).notifier()
    let waitSet = WaitSet()
    _ = waitSet.attach(listener)
    try acknowledge.notify(0)                                // "listening": the parent may start
    while true {
        let ready = try waitSet.wait(timeout: .seconds(30))
        if ready.isEmpty { print("child: nothing for 30 s, leaving"); return }
        for id in listener.tryWait() {
            print("child: event \(id)")
            if id == Command.stop { return }
            try acknowledge.notify(id)
        }
    }
}

func parent() throws {
    let node = try Node(name: "example-events-parent")
    let notifier = try node.event(commands).notifier()
    let acknowledgements = try node.event(replies).listener()  // exists before the child starts
    let childProcess = try ChildProcess.spawn(ChildProcess.currentExecutablePath, arguments: ["child"])
    guard acknowledgements.wait(timeout: .seconds(30)).contains(0) else { print("parent: the child never started"); return }
    for id in [Command.hello, Command.work] {
        try notifier.notify(id)
        let acked = acknowledgements.wait(timeout: .seconds(5))
        print("parent: child acknowledged \(acked)")
    }
    try notifier.notify(Command.stop)
    print("child \(try childProcess.wait(timeout: .seconds(30)))")
}

if CommandLine.arguments.dropFirst().first == "child" { try child() } else { try parent() }
