import Glibc
import Kernel
import RedirectCore

/// The daemon's flags, applied over the config file: they win wherever they are given.
public struct CommandLineOverrides: Sendable {
    public var queue: UInt16?
    public var queues: UInt16?
    public var busyPoll: QueuePolling?
    public var lookupBusyPoll: Int?
    public var socket: String?
    public var datapath: String?
    public var redirects: [String] = []
    public var localRedirects: [String] = []
    public var excludeMarks: [String] = []
    public var excludeUIDs: [UInt32] = []
    /// `.some(nil)` turns state keeping off.
    public var stateFile: String??
    /// `.some(nil)` keeps the live table in private memory only.
    public var tableFile: String??
    public var failOpen: Bool?
    public var keepRulesOnExit: Bool?
    public var tableLimit: Int?
    public var metrics: String?
    public var logLevel: String?
    public var getsockoptHook: Bool?
    public var getsockoptCgroup: String?

    public init() {}

    public func apply(to c: inout DaemonConfiguration) throws(ConfigurationError) {
        func fail(_ flag: String, _ problem: String) -> ConfigurationError {
            ConfigurationError(location: flag, field: "", problem: problem)
        }
        if let queue { c.queues.first = queue }
        if let queues {
            guard (1...64).contains(queues) else { throw fail("--queues", "\(queues) is out of range 1...64") }
            c.queues.count = queues
        }
        let limit = NetfilterQueueConfiguration.busyPollLimit
        if let busyPoll {
            if case .fixed(let value) = busyPoll, !limit.contains(value) {
                throw fail("--busy-poll", "\(value) µs is out of range \(limit.lowerBound)...\(limit.upperBound) (or adaptive)")
            }
            c.queues.polling = busyPoll
        }
        if let lookupBusyPoll {
            guard limit.contains(lookupBusyPoll) else {
                throw fail("--lookup-busy-poll", "\(lookupBusyPoll) µs is out of range \(limit.lowerBound)...\(limit.upperBound)")
            }
            c.lookup.busyPollMicroseconds = lookupBusyPoll
        }
        if let socket { c.lookup.socketPath = socket }
        if let datapath {
            guard let mode = DaemonConfiguration.Datapath.Mode(rawValue: datapath) else {
                throw fail("--datapath", "'\(datapath)' is not userspace or kernel-nat")
            }
            c.datapath.mode = mode
        }
        // Flags name the whole redirect set when given: the config file's list is replaced.
        if !redirects.isEmpty || !localRedirects.isEmpty {
            var rules: [RedirectRule] = []
            for (flag, texts, scope) in [("--redirect", redirects, RedirectRule.Scope.network), ("--redirect-local", localRedirects, .local)] {
                for text in texts {
                    do {
                        rules.append(try RedirectRule(parsing: text, scope: scope))
                    } catch {
                        throw fail("\(flag) \(text)", error.description)
                    }
                }
            }
            c.redirects = rules
        }
        if !excludeMarks.isEmpty {
            c.exclusions.marks = []
            for text in excludeMarks {
                guard let mark = FirewallMark(parsing: text) else {
                    throw fail("--exclude-mark \(text)", "not a mark like 0x1 or 0x100/0xff00")
                }
                c.exclusions.marks.append(mark)
            }
        }
        if !excludeUIDs.isEmpty { c.exclusions.uids = excludeUIDs }
        if let stateFile { c.stateFile = stateFile }
        if let tableFile {
            c.liveTable = tableFile.map { $0.isEmpty ? .off : .path($0) } ?? .off
        }
        if let failOpen { c.queues.failOpen = failOpen }
        if let keepRulesOnExit { c.keepRulesOnExit = keepRulesOnExit }
        if let tableLimit {
            guard (1024...(64 << 20)).contains(tableLimit) else { throw fail("--table-limit", "\(tableLimit) is out of range 1024...67108864") }
            c.tableLimit = tableLimit
        }
        if let metrics { c.metrics.listen = metrics }
        if let getsockoptHook { c.getsockopt.enabled = getsockoptHook }
        if let getsockoptCgroup {
            guard getsockoptCgroup.isEmpty || getsockoptCgroup.hasPrefix("/") else {
                throw fail("--getsockopt-cgroup", "must be an absolute path (or empty for the cgroup v2 root)")
            }
            c.getsockopt.cgroup = getsockoptCgroup.isEmpty ? nil : getsockoptCgroup
        }
        if let logLevel { c.logLevel = logLevel }
    }
}

extension DaemonConfiguration {
    /// Reads and applies a config file over the defaults.
    public static func load(path: String) throws(ConfigurationError) -> DaemonConfiguration {
        guard let file = fopen(path, "re") else {
            throw ConfigurationError(location: path, field: "", problem: "cannot read: \(String(cString: strerror(errno)))")
        }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = fread(&chunk, 1, chunk.count, file)
            if count <= 0 { break }
            bytes.append(contentsOf: chunk[0..<count])
            guard bytes.count <= 4 << 20 else {
                throw ConfigurationError(location: path, field: "", problem: "larger than 4 MiB; not a config file")
            }
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw ConfigurationError(location: path, field: "", problem: "not UTF-8 text")
        }
        var configuration = DaemonConfiguration()
        try ConfigurationFile.apply(text, path: path, to: &configuration)
        return configuration
    }

    /// A human-readable summary (for `--check-config` and the start-up log line).
    public var summary: String {
        var lines: [String] = []
        if datapath.mode == .kernelNAT {
            lines.append("datapath kernel-nat mark mask 0x\(String(datapath.markMask, radix: 16)) resync every \(datapath.resyncSeconds) s")
        }
        for rule in redirects {
            var line = "redirect \(rule.scope == .network ? "network" : "local") \(rule)"
            if !rule.sources.isEmpty { line += " from \(rule.sources.map(\.description).joined(separator: ","))" }
            if !rule.destinations.isEmpty { line += " to \(rule.destinations.map(\.description).joined(separator: ","))" }
            if rule.families.count == 1, let family = rule.families.first { line += family == .ipv4 ? " ipv4 only" : " ipv6 only" }
            lines.append(line)
        }
        lines.append(
            "queues original \(queues.originalQueues.lowerBound)-\(queues.originalQueues.upperBound)\(datapath.mode == .kernelNAT ? " (first packets)" : " reply \(queues.replyQueues.lowerBound)-\(queues.replyQueues.upperBound)")\(queues.failOpen ? " fail-open" : " fail-closed")\(queues.polling == .adaptive ? " busy-poll adaptive" : queues.busyPollMicroseconds > 0 ? " busy-poll \(queues.busyPollMicroseconds) µs" : "")"
        )
        lines.append("lookup socket \(lookup.socketPath)\(lookup.busyPollMicroseconds > 0 ? " busy-poll \(lookup.busyPollMicroseconds) µs" : "")")
        lines.append("table limit \(tableLimit)")
        lines.append(
            datapath.mode == .kernelNAT
                ? "getsockopt answered by the kernel's NAT"
                : getsockopt.enabled ? "getsockopt hook on \(getsockopt.cgroup ?? "the cgroup v2 root")" : "getsockopt hook off")
        lines.append("state file \(stateFile ?? "none")")
        lines.append("live table \(liveTablePath ?? "none (private memory)")")
        if !exclusions.marks.isEmpty { lines.append("exclude marks \(exclusions.marks.map(\.description).joined(separator: ","))") }
        if !exclusions.uids.isEmpty { lines.append("exclude uids \(exclusions.uids.map(String.init).joined(separator: ","))") }
        if let listen = metrics.listen { lines.append("metrics on \(listen)") }
        return lines.joined(separator: "\n")
    }
}
