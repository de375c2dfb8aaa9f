import ArgumentParser
import Daemon
import Glibc

/// The daemon's command line (see README and ../docs/operations.md). Flags win over the
/// config file. Any problem is one line on stderr and a non-zero exit, before the host is touched.
struct RedirectDaemonCommand: ParsableCommand, @unchecked Sendable {
    static let configuration = CommandConfiguration(
        commandName: "nfq-redirectd",
        abstract: "Userspace REDIRECT + conntrack + SO_ORIGINAL_DST for transparent proxies, over NFQUEUE.")

    @Option(name: .long, help: "Config file (TOML).")
    var config: String?

    @Option(name: .long, help: "First NFQUEUE number. Uses N..N+2K-1 for K queues per direction.")
    var queue: UInt16?

    @Option(name: .long, help: "Queues (datapath threads) per direction.")
    var queues: UInt16?

    @Option(name: .long, help: "Lookup socket path.")
    var socket: String?

    @Option(name: .long, help: "Redirect traffic from the network: PROTO:PORTS:TOPORT (e.g. tcp:80,443:8080).")
    var redirect: [String] = []

    @Option(name: .customLong("redirect-local"), help: "Redirect connections opened on this host: PROTO:PORTS:TOPORT.")
    var redirectLocal: [String] = []

    @Option(name: .customLong("exclude-mark"), help: "Never redirect packets with this fwmark (VALUE[/MASK]).")
    var excludeMark: [String] = []

    @Option(name: .customLong("exclude-uid"), help: "Never redirect connections opened by this uid (local traffic).")
    var excludeUID: [UInt32] = []

    @Option(name: .customLong("state-file"), help: "Where the flow table is saved on exit and restored on start.")
    var stateFile: String?

    @Flag(name: .customLong("no-state"), help: "Do not save or restore the flow table.")
    var noState = false

    @Flag(name: .customLong("fail-open"), help: "While the daemon is away or behind, let traffic pass unredirected.")
    var failOpen = false

    @Flag(name: .customLong("keep-rules-on-exit"), help: "Leave the iptables rules in place on exit (for a restart).")
    var keepRulesOnExit = false

    @Option(name: .customLong("table-limit"), help: "Most flows tracked at once.")
    var tableLimit: Int?

    @Option(name: .long, help: "Serve Prometheus metrics on HOST:PORT.")
    var metrics: String?

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: String?

    @Flag(name: .customLong("check-config"), help: "Validate the configuration, print it, and exit.")
    var checkConfig = false

    func resolvedConfiguration() throws(ConfigurationError) -> DaemonConfiguration {
        var configuration = DaemonConfiguration()
        if let config {
            configuration = try DaemonConfiguration.load(path: config)
        }
        var overrides = CommandLineOverrides()
        overrides.queue = queue
        overrides.queues = queues
        overrides.socket = socket
        overrides.redirects = redirect
        overrides.localRedirects = redirectLocal
        overrides.excludeMarks = excludeMark
        overrides.excludeUIDs = excludeUID
        overrides.stateFile = noState ? .some(nil) : stateFile.map { .some($0) }
        overrides.failOpen = failOpen ? true : nil
        overrides.keepRulesOnExit = keepRulesOnExit ? true : nil
        overrides.tableLimit = tableLimit
        overrides.metrics = metrics
        overrides.logLevel = logLevel
        try overrides.apply(to: &configuration)
        try configuration.validate(source: config ?? "command line")
        return configuration
    }
}

do {
    let command = try RedirectDaemonCommand.parseAsRoot() as! RedirectDaemonCommand
    let configuration = try command.resolvedConfiguration()
    if command.checkConfig {
        print(configuration.summary)
        exit(0)
    }
    let exitCode = await RedirectDaemon.run(configuration: configuration) { () throws(ConfigurationError) in
        try command.resolvedConfiguration()
    }
    exit(exitCode)
} catch let error as ConfigurationError {
    fputs("nfq-redirectd: \(error)\n", stderr)
    exit(2)
} catch {
    let message = RedirectDaemonCommand.message(for: error)
    let code = RedirectDaemonCommand.exitCode(for: error)
    if code == .success {
        print(message)
        exit(0)
    }
    // One line: the problem, not the whole usage text.
    let firstLine = message.split(separator: "\n").first.map(String.init) ?? message
    fputs("nfq-redirectd: \(firstLine.hasPrefix("Error: ") ? String(firstLine.dropFirst(7)) : firstLine)\n", stderr)
    exit(2)
}
