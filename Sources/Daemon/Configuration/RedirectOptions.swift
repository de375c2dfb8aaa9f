import ArgumentParser
import Kernel

/// The flags that say what to redirect and how, shared by `nfq-redirectd` and
/// `nfq-redirect rules` so both read the same configuration the same way.
public struct RedirectOptions: ParsableArguments, Sendable {
    @Option(name: .long, help: "Config file (TOML).")
    public var config: String?

    @Option(name: .long, help: "First NFQUEUE number. Uses N..N+2K-1 for K queues per direction.")
    public var queue: UInt16?

    @Option(name: .long, help: "Queues (datapath threads) per direction.")
    public var queues: UInt16?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "How a datapath thread polls for packets before it sleeps: adaptive, or microseconds (0: off).",
            valueName: "adaptive|microseconds"))
    public var busyPoll: QueuePolling?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Microseconds the lookup thread polls for requests before it sleeps (0: off).",
            valueName: "microseconds"))
    public var lookupBusyPoll: Int?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Who rewrites redirected flows: userspace (every packet through the daemon) or kernel-nat (the daemon decides each flow's first packet, the kernel's NAT carries the rest).",
            valueName: "mode"))
    public var datapath: String?

    @Option(name: .long, help: "Lookup socket path.")
    public var socket: String?

    @Option(name: .long, help: "Redirect traffic from the network: PROTO:PORTS:TOPORT (e.g. tcp:80,443:8080).")
    public var redirect: [String] = []

    @Option(name: .customLong("redirect-local"), help: "Redirect connections opened on this host: PROTO:PORTS:TOPORT.")
    public var redirectLocal: [String] = []

    @Option(name: .customLong("exclude-mark"), help: "Never redirect packets with this fwmark (VALUE[/MASK]).")
    public var excludeMark: [String] = []

    @Option(name: .customLong("exclude-uid"), help: "Never redirect connections opened by this uid (local traffic).")
    public var excludeUID: [UInt32] = []

    @Option(name: .customLong("state-file"), help: "Where the flow table is saved on exit and restored on start.")
    public var stateFile: String?

    @Option(
        name: .customLong("table-file"),
        help: "The live flow table's file on tmpfs, which outlives a crash (default: flows.table beside the lookup socket; empty: none).")
    public var tableFile: String?

    @Flag(name: .customLong("no-state"), help: "Do not save or restore the flow table, nor keep it in a live table file.")
    public var noState = false

    @Flag(name: .customLong("fail-open"), help: "While the daemon is away or behind, let new traffic pass unredirected.")
    public var failOpen = false

    @Flag(name: .customLong("keep-rules-on-exit"), help: "Leave the iptables rules in place on exit (for a restart).")
    public var keepRulesOnExit = false

    @Option(name: .customLong("table-limit"), help: "Most flows tracked at once.")
    public var tableLimit: Int?

    @Option(name: .long, help: "Serve Prometheus metrics on HOST:PORT.")
    public var metrics: String?

    @Flag(
        name: .customLong("no-getsockopt-hook"),
        help: "Do not make the kernel answer getsockopt(SO_ORIGINAL_DST) for our flows (proxies then need the lookup socket or the preload library).")
    public var noGetsockoptHook = false

    @Option(
        name: .customLong("getsockopt-cgroup"),
        help: ArgumentHelp(
            "The cgroup v2 directory whose processes get native getsockopt answers (default: the cgroup v2 root, every process).",
            valueName: "path"))
    public var getsockoptCgroup: String?

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    public var logLevel: String?

    public init() {}

    /// The config file (if any) with these flags applied over it, validated (without
    /// `requireRedirects`, a configuration that redirects nothing passes too).
    public func resolve(requireRedirects: Bool = true) throws(ConfigurationError) -> DaemonConfiguration {
        var configuration = DaemonConfiguration()
        if let config {
            configuration = try DaemonConfiguration.load(path: config)
        }
        var overrides = CommandLineOverrides()
        overrides.queue = queue
        overrides.queues = queues
        overrides.busyPoll = busyPoll
        overrides.lookupBusyPoll = lookupBusyPoll
        overrides.socket = socket
        overrides.datapath = datapath
        overrides.redirects = redirect
        overrides.localRedirects = redirectLocal
        overrides.excludeMarks = excludeMark
        overrides.excludeUIDs = excludeUID
        overrides.stateFile = noState ? .some(nil) : stateFile.map { .some($0) }
        overrides.tableFile = noState ? .some(nil) : tableFile.map { .some($0) }
        overrides.failOpen = failOpen ? true : nil
        overrides.keepRulesOnExit = keepRulesOnExit ? true : nil
        overrides.tableLimit = tableLimit
        overrides.metrics = metrics
        overrides.logLevel = logLevel
        overrides.getsockoptHook = noGetsockoptHook ? false : nil
        overrides.getsockoptCgroup = getsockoptCgroup
        try overrides.apply(to: &configuration)
        try configuration.validate(source: config ?? "command line", requireRedirects: requireRedirects)
        return configuration
    }

    /// The configuration without the checks a daemon needs (no redirect is required): for
    /// `rules --remove`, which only needs to know which files to clean up.
    public func resolveUnvalidated() throws(ConfigurationError) -> DaemonConfiguration {
        try resolve(requireRedirects: false)
    }
}

extension QueuePolling: ExpressibleByArgument {
    public init?(argument: String) { self.init(parsing: argument) }
}
