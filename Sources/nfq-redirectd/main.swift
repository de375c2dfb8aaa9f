import ArgumentParser
import Daemon
import Glibc

/// The daemon's command line (README, docs/operations.md). Flags win over the config file.
/// Any problem is one line on stderr and a non-zero exit, before the host is touched.
struct RedirectDaemonCommand: ParsableCommand, Sendable {
    static let configuration = CommandConfiguration(
        commandName: "nfq-redirectd",
        abstract: "Userspace REDIRECT + conntrack + SO_ORIGINAL_DST for transparent proxies, over NFQUEUE.",
        discussion: """
            Redirects what the config file (/etc/nfq-redirect/nfq-redirect.toml under systemd) or \
            --redirect / --redirect-local name, and nothing else: with no redirect it refuses to start. \
            It installs its iptables and ip6tables rules in chains of its own (NFQR-PREROUTING, \
            NFQR-OUTPUT, NFQR-REPLY), checks them once a second and puts back what a firewall reload \
            removed ([rules] manage = false: the operator loads them, see nfq-redirect rules). Proxies ask \
            for original destinations on the lookup socket, or through libnfq-redirect-preload.so.

            Exit status: 0 after a stop; 1 when it could not start (no CAP_NET_ADMIN, a queue or the \
            lookup socket taken, iptables missing); 2 for a bad flag or config, before the host is touched.

            Signals: SIGTERM and SIGINT stop for good (rules removed, unless --keep-rules-on-exit); \
            SIGUSR2 stops for a restart (rules kept, flow table saved); SIGHUP reloads the config.

            Files: the lookup socket /run/nfq-redirect/lookup.sock; the saved flow table \
            /var/lib/nfq-redirect/flows.state. Check a config with --check-config and a host with \
            nfq-redirect doctor. More: operations.md in the doc directory (make install: \
            PREFIX/share/doc/nfq-redirect/).
            """,
        version: DaemonVersion.current)

    @OptionGroup var options: RedirectOptions

    @Flag(name: .customLong("check-config"), help: "Validate the configuration, print it, and exit.")
    var checkConfig = false
}

// First, on the main thread, so every thread the daemon starts inherits the mask.
LifecycleSignals.hold()
do {
    let command = try RedirectDaemonCommand.parse()
    let configuration = try command.options.resolve()
    try configuration.checkLookupNames(source: command.options.config ?? "command line")
    if command.checkConfig {
        print(configuration.summary)
        exit(0)
    }
    let exitCode = RedirectDaemon.runBlocking(configuration: configuration) { () throws(ConfigurationError) in
        try command.options.resolve()
    }
    exit(exitCode)
} catch let error as ConfigurationError {
    fputs("nfq-redirectd: \(error)\n", stderr)
    exit(2)
} catch {
    let message = RedirectDaemonCommand.message(for: error)
    if RedirectDaemonCommand.exitCode(for: error) == .success {
        print(message)
        exit(0)
    }
    // One line: the problem, not the whole usage text.
    let firstLine = message.split(separator: "\n").first.map(String.init) ?? message
    fputs("nfq-redirectd: \(firstLine.hasPrefix("Error: ") ? String(firstLine.dropFirst(7)) : firstLine)\n", stderr)
    exit(2)
}
