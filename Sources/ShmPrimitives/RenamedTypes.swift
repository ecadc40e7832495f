// Names used before one public name per concept (round 2). Each structure
// now has one type whether it lives in its own named segment
// (`MessageRing.create`) or in memory the caller lays out
// (`MessageRing(attaching:)`).

@available(*, deprecated, renamed: "MessageRing")
public typealias SPSCRing = MessageRing
@available(*, deprecated, renamed: "MessageQueue")
public typealias MPMCQueue = MessageQueue
@available(*, deprecated, renamed: "SharedMutex")
public typealias RobustMutex = SharedMutex
@available(*, deprecated, renamed: "SharedEvent")
public typealias FutexEvent = SharedEvent
@available(*, deprecated, renamed: "SharedSemaphore")
public typealias FutexSemaphore = SharedSemaphore
