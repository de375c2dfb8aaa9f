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
        let ours = Array(configuration.queues.originalQueues) + Array(configuration.queues.replyQueues)
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

    /// The exit status: 1 when anything failed.
    public static func exitStatus(_ findings: [Finding]) -> Int32 {
        findings.contains { $0.level == .fail } ? 1 : 0
    }
}
