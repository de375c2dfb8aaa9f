import ArgumentParser
import Daemon
import Glibc

/// The daemon's command line (README, docs/operations.md). Flags win over the config file.
/// Any problem is one line on stderr and a non-zero exit, before the host is touched.
struct RedirectDaemonCommand: ParsableCommand, Sendable {
    static let configuration = CommandConfiguration(
        commandName: "nfq-redirectd",
        abstract: "Userspace REDIRECT + conntrack + SO_ORIGINAL_DST for transparent proxies, over NFQUEUE.",
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
