#if canImport(Glibc)
import Glibc
#endif

/// A thread of its own (`pthread_create(3)`, detached) for work that lasts
/// as long as its owner — the log's pretoucher. Unlike `BlockingPool`'s
/// threads it is never reused for other work, so its body may pin it to a
/// CPU.
package enum DedicatedThread {
    private final class Body {
        let run: @Sendable () -> Void
        init(_ run: @escaping @Sendable () -> Void) { self.run = run }
    }

    /// Starts `body` on a new detached thread.
    ///
    /// - Throws: the `pthread_create` error (`EAGAIN`: out of threads or memory).
    package static func start(_ body: @escaping @Sendable () -> Void) throws(Errno) {
        let context = Unmanaged.passRetained(Body(body)).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { argument in
            Unmanaged<Body>.fromOpaque(argument!).takeRetainedValue().run()
            return nil
        }, context)
        guard rc == 0 else {
            Unmanaged<Body>.fromOpaque(context).release()
            throw Errno(rawValue: rc)
        }
        pthread_detach(thread)
    }
}
