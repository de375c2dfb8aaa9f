import CSystemCalls
import Glibc

/// Starts a named POSIX thread. The datapath and the lookup service run on threads of their
/// own rather than on Swift concurrency's pool: they block in the kernel (recv, epoll_wait)
/// by design, and must never be starved by or starve async work.
func startThread(name: String, _ body: @escaping @Sendable () -> Void) -> pthread_t {
    final class Box: @unchecked Sendable {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
    var thread = pthread_t()
    let box = Unmanaged.passRetained(Box(body)).toOpaque()
    let result = pthread_create(
        &thread, nil,
        { argument in
            let box = Unmanaged<Box>.fromOpaque(argument!).takeRetainedValue()
            box.body()
            return nil
        }, box)
    precondition(result == 0, "pthread_create failed: \(result)")
    nfqr_set_thread_name(thread, String(name.prefix(15)))
    return thread
}

/// Seconds on CLOCK_MONOTONIC: system-wide since boot, so flow expiry times stay valid when
/// the daemon restarts and reloads its saved table.
public func monotonicSeconds() -> Int {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return now.tv_sec
}

/// Milliseconds on CLOCK_MONOTONIC.
func monotonicMilliseconds() -> Int {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return now.tv_sec * 1000 + now.tv_nsec / 1_000_000
}
