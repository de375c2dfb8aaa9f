import Glibc

/// The signals that stop, reload and restart the daemon, blocked from the first line of main.
///
/// Why: swift-service-lifecycle registers its handlers only when the service group runs, after
/// the rules, queues and lookup socket are up and READY=1 is sent. Unblocked, a SIGHUP in that
/// gap (a `systemctl reload` right after start) killed the daemon with the default action, and
/// a SIGTERM left its rules behind. Blocked, they stay pending; Dispatch's signal sources read
/// them through a signalfd, which takes blocked signals, as soon as the group registers them.
/// Every thread the daemon starts inherits the mask; spawned programs get an empty one.
public enum LifecycleSignals {
    private static let held: [CInt] = [SIGTERM, SIGINT, SIGHUP, SIGUSR2]

    /// Blocks `held` on the calling thread: call it on the main thread before any other starts.
    public static func hold() {
        var set = sigset_t()
        sigemptyset(&set)
        for signal in held { sigaddset(&set, signal) }
        pthread_sigmask(SIG_BLOCK, &set, nil)
    }
}
