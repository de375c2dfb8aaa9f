import ArgumentParser
import Daemon
import Glibc
import Kernel
import NFQRedirectClient
import RedirectCore

/// `nfq-redirect`: ask the daemon, list and watch its table, print or remove its rules.
struct RedirectControl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nfq-redirect",
        abstract: "Control and inspect nfq-redirectd.",
        version: DaemonVersion.current,
        subcommands: [Lookup.self, List.self, Stats.self, Events.self, Rules.self, Hook.self, Version.self, DoctorCommand.self])
}

struct SocketOption: ParsableArguments {
    @Option(name: .long, help: "The daemon's lookup socket (default: $NFQ_REDIRECT_SOCKET or /run/nfq-redirect/lookup.sock).")
    var socket: String?

    var path: String {
        socket ?? getenv("NFQ_REDIRECT_SOCKET").map { String(cString: $0) } ?? LookupClient.defaultSocketPath
    }

    /// Failures reach the user as `Error: <why>` and exit status 1 (no usage text: the command was right).
    func connect() throws(LookupClient.Failure) -> LookupClient {
        try LookupClient(socketPath: path)
    }
}

extension RedirectControl {
    struct Lookup: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Where was a connection really going? Exit 0 with the address, 1 with the reason.")

        @OptionGroup var socket: SocketOption
        @Argument(help: "tcp or udp") var proto: String
        @Argument(help: "The client's address (the proxy's getpeername).") var clientAddress: String
        @Argument var clientPort: UInt16
        @Argument(help: "The proxy's own address (getsockname).") var localAddress: String
        @Argument var localPort: UInt16

        func run() throws {
            guard let proto = TransportProtocol(name: proto) else { throw ValidationError("protocol must be tcp or udp") }
            guard let client = IPAddress(clientAddress) else { throw ValidationError("\(clientAddress) is not an IP address") }
            guard let local = IPAddress(localAddress) else { throw ValidationError("\(localAddress) is not an IP address") }
            let answer = try socket.connect().lookup(proto, client: Endpoint(client, clientPort), local: Endpoint(local, localPort))
            switch answer {
            case .original(let endpoint):
                print(endpoint)
            case .denied:
                throw LookupClient.Failure.denied
            case .busy:
                throw LookupClient.Failure.busy
            default:
                print(answer.line.dropLast())
                throw ExitCode(1)
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List tracked flows (like conntrack -L).")
        @OptionGroup var socket: SocketOption
        @Flag(help: "One JSON object per flow.") var json = false

        func run() throws {
            let lines = try collect(socket, .list(json ? .json : .text))
            if json {
                print("[" + lines.joined(separator: ",\n") + "]")
            } else {
                FlowTableView.render(lines).forEach { print($0) }
                print("\(lines.count) flow\(lines.count == 1 ? "" : "s")")
            }
        }
    }

    struct Stats: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Counters of the datapath, table and lookups (like conntrack -S).")
        @OptionGroup var socket: SocketOption
        @Flag(help: "As one JSON object.") var json = false

        func run() throws {
            try collect(socket, .stats(json ? .json : .text)).forEach { print($0) }
        }
    }

    struct Events: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Follow flow events (new, destroyed) until interrupted (like conntrack -E).")
        @OptionGroup var socket: SocketOption
        @Flag(help: "One JSON object per event.") var json = false

        func run() throws {
            let client = try socket.connect()
            do {
                let answer = try client.request(.events(json ? .json : .text))
                guard answer.hasPrefix("OK") else { throw LookupClient.Failure.malformedAnswer(answer) }
                setvbuf(stdout, nil, _IOLBF, 0)
                while true {
                    do {
                        print(try client.readLine())
                    } catch .timedOut {
                        continue
                    }
                }
            } catch let error as LookupClient.Failure {
                if error == .connectionClosed { return }
                throw error
            }
        }
    }

    struct Rules: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the firewall rules nfq-redirectd installs for a configuration, or remove them.",
            discussion: """
                Without --remove, prints what the daemon would install for the same flags or config file: \
                iptables-restore / ip6tables-restore input (--format iptables, the default) or an nftables \
                ruleset (--format nft), for people who manage rules themselves. With --remove, deletes every \
                rule and chain of the daemon's from the kernel (after a daemon was killed, for example), and \
                the saved flow table of the configuration given (its flows end with the rules). \
                With --unless-restarting UNIT (the unit's ExecStopPost=), does so only when systemd is not \
                about to start the daemon again; with --gave-up UNIT (the unit's OnFailure= unit), when systemd \
                gave up restarting it, unless [rules] on_give_up = keep. Under either, rules the operator \
                manages ([rules] manage = false) are left alone; see docs/operations.md.
                """)

        enum Format: String, ExpressibleByArgument, CaseIterable { case iptables, nft }

        @OptionGroup var options: RedirectOptions
        @Option(help: "iptables or nft.") var format: Format = .iptables
        @Flag(help: "Remove the daemon's rules and chains from the kernel, then exit.") var remove = false
        @Option(
            name: .customLong("unless-restarting"),
            help: ArgumentHelp(
                "With --remove, under systemd: keep the rules if systemd will start UNIT again.", valueName: "UNIT"))
        var unlessRestarting: String?
        @Option(
            name: .customLong("gave-up"),
            help: ArgumentHelp(
                "With --remove, from UNIT's OnFailure= unit: systemd gave up on UNIT; remove unless [rules] on_give_up = keep.",
                valueName: "UNIT"))
        var gaveUp: String?

        func validate() throws {
            if unlessRestarting != nil && !remove { throw ValidationError("--unless-restarting goes with --remove") }
            if gaveUp != nil && !remove { throw ValidationError("--gave-up goes with --remove") }
            if gaveUp != nil && unlessRestarting != nil { throw ValidationError("--gave-up and --unless-restarting exclude each other") }
        }

        func run() throws {
            if remove {
                try removeRules()
                return
            }
            let ruleSet: RuleSetConfiguration
            do {
                ruleSet = try options.resolve().ruleSet
            } catch {
                throw ValidationError(error.description)
            }
            do {
                switch format {
                case .iptables:
                    for family in [AddressFamily.ipv4, .ipv6] {
                        guard let rules = try RuleGenerator.iptables(ruleSet, family: family) else { continue }
                        print("# \(family == .ipv4 ? "iptables-restore" : "ip6tables-restore") --noflush")
                        print(rules.restoreInput(insertingJumps: rules.chains), terminator: "")
                    }
                case .nft:
                    print(try RuleGenerator.nftables(ruleSet), terminator: "")
                }
            } catch {
                throw ValidationError("\(error)")
            }
        }

        private func removeRules() throws {
            // Redirects are not needed to find the state file and [rules]; a file that cannot
            // be read at all (the very config that made systemd give up) counts as the defaults.
            let configuration = (try? options.resolve(requireRedirects: false)) ?? DaemonConfiguration()
            let management = configuration.ruleManagement
            let environment = { (name: String) in getenv(name).map { String(cString: $0) } }
            if (unlessRestarting ?? gaveUp) != nil && !management.manage {
                print("nfq-redirect rules left alone: [rules] manage = false, they are the operator's")
                return
            }
            let installer = IptablesRuleInstaller()
            if let unit = unlessRestarting {
                let decision = StopPostDecision.decide(
                    pendingJob: SystemdJobs.pendingJobType(unit: unit), serviceResult: environment("SERVICE_RESULT"),
                    exitStatus: environment("EXIT_STATUS"), onGiveUp: management.onGiveUp)
                guard decision.removeRules else {
                    print("nfq-redirect rules kept: \(decision.reason)")
                    return
                }
                print("nfq-redirect rules: removing, \(decision.reason)")
            }
            if let unit = gaveUp {
                let decision = GiveUpDecision.decide(
                    unit: unit, unitState: SystemdJobs.activeState(unit: unit), result: environment("MONITOR_SERVICE_RESULT"),
                    rulesPresent: (try? installer.anyInstalled()) ?? true, onGiveUp: management.onGiveUp)
                print("nfq-redirect: \(decision.message)")
                guard decision.removeRules else { return }
            }
            do {
                try installer.remove()
            } catch {
                throw ValidationError("removing rules failed: \(error)")
            }
            if gaveUp == nil { print("nfq-redirect rules removed (iptables and ip6tables)") }
            // The getsockopt hook answers for the flows of those rules: it goes with them. A
            // host where it cannot exist has nothing to remove.
            if BPFGetsockoptHook.isBuiltIn {
                do {
                    let removed =
                        try BPFGetsockoptHook.removeLeftovers(cgroupPath: configuration.getsockopt.cgroup)
                        + BPFGetsockoptHook.removeOrphans(cgroupPath: configuration.getsockopt.cgroup)
                    if removed > 0 { print("nfq-redirect getsockopt hook removed (\(removed) BPF program\(removed == 1 ? "" : "s"))") }
                } catch {
                    print("nfq-redirect getsockopt hook: nothing removed (\(error))")
                }
            }
            // The saved flows belong to the rules just removed; a later start must not revive them.
            if let stateFile = configuration.stateFile {
                StateFile(path: stateFile).remove()
            }
            // So is the live table (a daemon started later must not adopt those flows).
            if let table = configuration.liveTablePath {
                unlink(table)
            }
        }
    }

    struct Hook: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Say whether the getsockopt hook of this network namespace's daemon is attached.",
            discussion: """
                The hook is the BPF program through which the kernel answers getsockopt(SO_ORIGINAL_DST) \
                for the daemon's flows. It stays attached across a restart (and after a crash) and goes \
                with a stop for good or `nfq-redirect rules --remove`. Exit status 0 when attached, 1 when not.
                """)
        @Option(
            name: .customLong("cgroup"),
            help: ArgumentHelp(
                "The cgroup v2 directory the daemon attaches to (default: the cgroup v2 root).", valueName: "path"))
        var cgroup: String?

        func run() throws {
            guard BPFGetsockoptHook.isBuiltIn else {
                print("getsockopt hook: not built into this binary")
                throw ExitCode(1)
            }
            let count: Int
            do {
                count = try BPFGetsockoptHook.attachedCount(cgroupPath: cgroup)
            } catch {
                throw ValidationError("\(error)")
            }
            print(
                "getsockopt hook: \(count == 0 ? "not attached" : "attached (\(count) program\(count == 1 ? "" : "s"))") for this network namespace")
            if count == 0 { throw ExitCode(1) }
        }
    }

    struct Version: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The daemon's version and protocol.")
        @OptionGroup var socket: SocketOption

        func run() throws {
            print(try socket.connect().request(.version))
        }
    }
}

private func collect(_ socket: SocketOption, _ request: LookupRequest) throws(LookupClient.Failure) -> [String] {
    try socket.connect().collect(request)
}

RedirectControl.main()
