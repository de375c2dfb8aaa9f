import Glibc
import Kernel
import RedirectCore

/// `nfq-redirect doctor`: what an operator checks on day one, one line each. The checks that
/// read the host live in the CLI; the judgements live here, so they can be tested.
public enum Doctor {
    public enum Level: String, Sendable, Comparable {
        case ok = "ok", warn = "warn", fail = "FAIL"

        private var rank: Int { self == .ok ? 0 : self == .warn ? 1 : 2 }
        public static func < (a: Level, b: Level) -> Bool { a.rank < b.rank }
    }

    public struct Finding: Equatable, Sendable, CustomStringConvertible {
        public var level: Level
        public var check: String
        public var detail: String

        public init(_ level: Level, _ check: String, _ detail: String) {
            self.level = level
            self.check = check
            self.detail = detail
        }

        public var description: String { "\(level.rawValue.padding(toLength: 5, withPad: " ", startingAt: 0)) \(check): \(detail)" }
    }

    /// Are the daemon's queues bound (a daemon reads them), and has the kernel dropped packets?
    /// `rulesInPlace`: whether the rules that feed them are in the kernel (unbound queues behind
    /// them hold or pass redirected traffic).
    public static func queues(_ configuration: DaemonConfiguration, kernel: [NetfilterQueueKernelStatistics], rulesInPlace: Bool) -> [Finding] {
        // Kernel-nat mode queues first packets only: no reply queues.
        let replies = configuration.datapath.mode == .kernelNAT ? [] : Array(configuration.queues.replyQueues)
        let ours = Array(configuration.queues.originalQueues) + replies
        let bound = Dictionary(kernel.map { ($0.queueNumber, $0) }, uniquingKeysWith: { first, _ in first })
        let unbound = ours.filter { bound[$0] == nil }
        var findings: [Finding] = []
        if unbound.count == ours.count {
            let what =
                !rulesInPlace
                ? ""
                : configuration.queues.failOpen
                    ? " (the rules are in place, fail-open: redirected traffic passes unredirected)"
                    : " (the rules are in place, fail-closed: redirected ports are blocked; start the daemon or `nfq-redirect rules --remove`)"
            findings.append(Finding(.fail, "queues", "none of \(ours.map(String.init).joined(separator: ",")) is bound: no daemon reads them\(what)"))
        } else if !unbound.isEmpty {
            findings.append(
                Finding(.fail, "queues", "queue\(unbound.count == 1 ? "" : "s") \(unbound.map(String.init).joined(separator: ",")) not bound"))
        } else {
            findings.append(Finding(.ok, "queues", "\(ours.map(String.init).joined(separator: ",")) bound"))
        }
        let dropped = ours.compactMap { bound[$0] }.reduce(0) { $0 + UInt64($1.queueDropped) + UInt64($1.userDropped) }
        if dropped > 0 {
            findings.append(
                Finding(
                    .warn, "queue drops",
                    "the kernel dropped \(dropped) packets at these queues since they were bound (queue or socket buffer full): see [queue] in the config"
                ))
        }
        return findings
    }

    /// Rules present or missing, worded for whether the daemon or the operator owns them.
    public static func rules(missing: [String], manage: Bool, daemonRunning: Bool) -> Finding {
        guard !missing.isEmpty else { return Finding(.ok, "rules", "chains and jumps in place") }
        let what = missing.count <= 3 ? missing.joined(separator: ", ") : "\(missing.prefix(2).joined(separator: ", ")) and \(missing.count - 2) more"
        if !manage {
            return Finding(.fail, "rules", "missing (\(what)); [rules] manage = false: load what `nfq-redirect rules` prints")
        }
        if daemonRunning {
            return Finding(.warn, "rules", "missing (\(what)); the daemon puts them back within a second (a firewall reload?)")
        }
        return Finding(.warn, "rules", "not installed (\(what)); the daemon installs them when it starts")
    }

    // MARK: - The host around the rules

    /// Network-scope redirects on a host that does not forward: the redirected ports still
    /// reach the proxy (their destination becomes this host), but a client that uses this host
    /// as its gateway gets nothing else through. `ipv4`/`ipv6`: net.ipv{4,6}...forwarding (nil:
    /// not readable). Nil when no redirect is network-scope.
    public static func forwarding(_ configuration: DaemonConfiguration, ipv4: Int?, ipv6: Int?) -> Finding? {
        guard configuration.redirects.contains(where: { $0.scope == .network }) else { return nil }
        let off = [("net.ipv4.ip_forward", ipv4), ("net.ipv6.conf.all.forwarding", ipv6)].filter { $0.1 == 0 }.map(\.0)
        guard !off.isEmpty else { return Finding(.ok, "forwarding", "on (IPv4 and IPv6)") }
        return Finding(
            .warn, "forwarding",
            "\(off.joined(separator: ", ")) = 0: redirected ports reach the proxy, but clients that route through this host get nothing else across (sysctl -w \(off[0])=1 if it is their gateway)"
        )
    }

    /// Strict reverse-path filtering (rp_filter 1; the effective value of an interface is the
    /// larger of `all` and its own) drops a client whose source address is not routed back out
    /// of the interface it came in on: asymmetric or policy routing, the usual set-up in front
    /// of a proxy. `values`: interface name -> rp_filter, `all` included. Nil when no redirect
    /// is network-scope.
    public static func reversePathFilter(_ configuration: DaemonConfiguration, values: [String: Int]) -> Finding? {
        guard configuration.redirects.contains(where: { $0.scope == .network }) else { return nil }
        let all = values["all"] ?? 0
        let strict = values.filter { $0.key != "all" && $0.key != "default" && $0.key != "lo" && max(all, $0.value) == 1 }.keys.sorted()
        guard !strict.isEmpty else { return Finding(.ok, "rp_filter", "loose or off on every interface") }
        let names = strict.count <= 4 ? strict.joined(separator: ", ") : "\(strict.prefix(3).joined(separator: ", ")) and \(strict.count - 3) more"
        return Finding(
            .warn, "rp_filter",
            "strict on \(names): clients whose replies route out of another interface are dropped before any redirect (asymmetric routing); loose keeps the check: sysctl -w net.ipv4.conf.all.rp_filter=2"
        )
    }

    /// A local-scope redirect catches the proxy's own upstream connections too, unless they
    /// carry an excluded mark or run as an excluded uid: the proxy then connects to itself.
    public static func exclusions(_ configuration: DaemonConfiguration) -> Finding {
        let marks = configuration.exclusions.marks.map(\.description)
        let uids = configuration.exclusions.uids.map(String.init)
        let what = (marks.isEmpty ? [] : ["marks \(marks.joined(separator: ", "))"]) + (uids.isEmpty ? [] : ["uids \(uids.joined(separator: ", "))"])
        if configuration.redirects.contains(where: { $0.scope == .local }) && what.isEmpty {
            return Finding(
                .warn, "exclusions",
                "none, with a local-scope redirect: the proxy's own upstream connections are redirected back to it (a loop); mark them (SO_MARK) with an [exclude] mark or add its uid to [exclude] uids"
            )
        }
        return Finding(.ok, "exclusions", what.isEmpty ? "none (no local-scope redirect needs one)" : what.joined(separator: "; "))
    }

    /// The getsockopt hook: through it proxies get their answer with nothing added.
    /// `attached`: programs of this namespace's daemon attached (nil: could not be read, with `why`).
    public static func getsockoptHook(_ configuration: DaemonConfiguration, builtIn: Bool, attached: Int?, why: String?, daemonRunning: Bool)
        -> Finding
    {
        guard configuration.getsockopt.enabled else {
            return Finding(.ok, "getsockopt hook", "off ([getsockopt] hook = false): proxies ask the lookup socket or use the preload library")
        }
        guard builtIn else {
            return Finding(.warn, "getsockopt hook", "not built into this nfq-redirect: proxies ask the lookup socket or use the preload library")
        }
        guard let attached else { return Finding(.warn, "getsockopt hook", "cannot tell whether it is attached: \(why ?? "unknown")") }
        if attached > 0 { return Finding(.ok, "getsockopt hook", "attached: proxies' getsockopt(SO_ORIGINAL_DST) gets the daemon's answers") }
        return Finding(
            .warn, "getsockopt hook",
            daemonRunning
                ? "not attached although the daemon runs: it said why at start (journalctl -u nfq-redirect); proxies get the kernel's answer (their own address) unless they use the lookup socket or the preload library"
                : "not attached (no daemon): it attaches when the daemon starts")
    }

    // MARK: - Who may use the lookup socket

    /// A user as the kernel checks it: uid, primary group, supplementary groups.
    public struct Account: Equatable, Sendable {
        public var name: String
        public var uid: uid_t
        public var gid: gid_t
        public var groups: [gid_t]

        public init(name: String, uid: uid_t, gid: gid_t, groups: [gid_t]) {
            self.name = name
            self.uid = uid
            self.gid = gid
            self.groups = groups
        }
    }

    /// A file's owner, group and permission bits, as stat(2) gives them.
    public struct FileAccess: Equatable, Sendable {
        public var path: String
        public var uid: uid_t
        public var gid: gid_t
        public var mode: UInt32

        public init(path: String, uid: uid_t, gid: gid_t, mode: UInt32) {
            self.path = path
            self.uid = uid
            self.gid = gid
            self.mode = mode
        }

        /// The permission bits that apply to `account` (owner, then group, then others),
        /// shifted to the "others" position: 4 read, 2 write, 1 execute/search.
        func bits(for account: Account) -> UInt32 {
            if account.uid == uid { return (mode >> 6) & 7 }
            if account.gid == gid || account.groups.contains(gid) { return (mode >> 3) & 7 }
            return mode & 7
        }
    }

    /// Can `account` reach the socket (search on every directory, write on the socket) and
    /// will the daemon answer it (`[lookup]` allow list)? `directories` from / down to the
    /// socket's own; `socket` nil when there is no socket at the path.
    public static func socketAccess(
        _ account: Account, socketPath: String, directories: [FileAccess], socket: FileAccess?, lookup: DaemonConfiguration.Lookup
    ) -> Finding {
        let check = "lookup socket for \(account.name)"
        guard let socket else { return Finding(.fail, check, "\(socketPath) does not exist (the daemon is not running?)") }
        let policy: LookupAccessPolicy
        do {
            policy = try Preflight.resolveAccess(lookup).0
        } catch {
            return Finding(.fail, check, error.description)
        }
        let octal = String(socket.mode & 0o7777, radix: 8)
        if account.uid != 0 {
            if let blocked = directories.first(where: { $0.bits(for: account) & 1 == 0 }) {
                return Finding(
                    .fail, check,
                    "cannot enter \(blocked.path) (mode \(String(blocked.mode & 0o7777, radix: 8)), uid \(blocked.uid), gid \(blocked.gid)): the directories on the way need search (x) permission"
                )
            }
            guard socket.bits(for: account) & 2 != 0 else {
                let group = groupName(socket.gid)
                return Finding(
                    .fail, check,
                    "connect is refused (EACCES): \(socketPath) is mode \(octal), uid \(socket.uid), group \(group); add the user to that group: usermod -aG \(group) \(account.name) (a proxy run by systemd: SupplementaryGroups=\(group) in a drop-in), then restart the proxy"
                )
            }
        }
        let peer = PeerCredentials(pid: 0, uid: account.uid, gid: account.gid, groups: account.groups)
        guard policy.allows(peer) else {
            return Finding(
                .fail, check,
                "may connect, but the daemon answers ERR DENIED: not on [lookup] allow_users / allow_groups (or set allow_all = true)")
        }
        return Finding(.ok, check, "may connect to \(socketPath) (mode \(octal), group \(groupName(socket.gid))) and is answered")
    }

    private static func groupName(_ gid: gid_t) -> String {
        getgrgid(gid).map { String(cString: $0.pointee.gr_name) } ?? String(gid)
    }

    /// The exit status: 1 when anything failed.
    public static func exitStatus(_ findings: [Finding]) -> Int32 {
        findings.contains { $0.level == .fail } ? 1 : 0
    }
}
