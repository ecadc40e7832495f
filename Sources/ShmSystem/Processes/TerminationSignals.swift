import CShm

/// SIGINT, SIGTERM and SIGHUP as a flag a long-running loop polls, so the
/// program leaves through its normal path and its `deinit`s release what it
/// holds in shared memory, instead of dying and leaving it for `shm cleanup`.
///
/// ```swift
/// TerminationSignals.install()                     // on the main thread
/// while TerminationSignals.received == nil { …bounded waits… }
/// ```
///
/// The handlers record the first signal and interrupt the installing
/// thread's blocking call (`read`, `nanosleep`, `FUTEX_WAIT` return EINTR;
/// they are installed without `SA_RESTART`). Waits of this library that
/// have a deadline go back to sleep after EINTR, so loops should wait in
/// slices (say 100 ms) and check `received` between them.
package enum TerminationSignals {
    /// Installs the handlers (`sigaction`); call once, from the thread that
    /// runs the loop.
    package static func install() {
        _ = cshm_termination_install()
    }

    /// The first termination signal received since `install`, or nil.
    package static var received: Int32? {
        let signal = cshm_termination_received()
        return signal == 0 ? nil : signal
    }
}
