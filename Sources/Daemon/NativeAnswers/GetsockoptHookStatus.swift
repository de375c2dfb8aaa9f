/// Which way proxies get their answer from the kernel's own getsockopt(SO_ORIGINAL_DST).
enum GetsockoptHookStatus: Equatable, Sendable {
    /// The BPF hook answers for redirected flows of processes in `cgroup` and below.
    case on(cgroup: String)
    /// Turned off by configuration (`[getsockopt] hook = false`, `--no-getsockopt-hook`).
    case off
    /// Wanted, but the host refused it (no cgroup v2, BPF not permitted...): the reason.
    case unavailable(String)

    static let labels = ["on", "off", "unavailable"]

    var label: String {
        switch self {
        case .on: "on"
        case .off: "off"
        case .unavailable: "unavailable"
        }
    }

    var description: String {
        switch self {
        case .on(let cgroup): "on (\(cgroup))"
        case .off: "off"
        case .unavailable(let why): "unavailable: \(why)"
        }
    }
}
