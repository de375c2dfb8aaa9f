import RedirectCore

extension DaemonConfiguration {
    /// Checks what no single field can: the whole configuration must make sense before the
    /// daemon touches the host. `requireRedirects` false is for the commands that only need
    /// the rest of the file (`nfq-redirect rules --remove` finds the state file in it).
    public func validate(source: String, requireRedirects: Bool = true) throws(ConfigurationError) {
        func fail(_ field: String, _ problem: String) -> ConfigurationError {
            ConfigurationError(location: source, field: field, problem: problem)
        }
        // The shipped config redirects nothing: starting it must not quietly do nothing, nor
        // anything the operator did not ask for.
        guard !redirects.isEmpty || !requireRedirects else {
            throw fail(
                "redirect",
                "nothing to redirect: add a [[redirect]] to the config file (the shipped one has only commented-out examples) or give --redirect / --redirect-local"
            )
        }
        if datapath.mode == .kernelNAT {
            let ports = Set(redirects.map(\.toPort)).count
            guard kernelNATMarks != nil else {
                throw fail(
                    "datapath.mark_mask",
                    "mask \("0x" + String(datapath.markMask, radix: 16)) tells \(KernelNATMarks.capacity(of: datapath.markMask)) redirect ports apart, the rules name \(ports)"
                )
            }
            // A packet carrying such a mark would meet the daemon's nat rules as if the daemon
            // had marked it.
            for mark in exclusions.marks where mark.value & mark.mask & datapath.markMask != 0 {
                throw fail(
                    "exclude.marks",
                    "\("0x" + String(mark.value, radix: 16) + "/0x" + String(mark.mask, radix: 16)) overlaps kernel-nat's mark bits \("0x" + String(datapath.markMask, radix: 16)) (set datapath.mark_mask to other bits)"
                )
            }
        }
        guard Int(queues.first) + 2 * Int(queues.count) - 1 <= Int(UInt16.max) else {
            throw fail("queue", "queues \(queues.first) to \(Int(queues.first) + 2 * Int(queues.count) - 1) exceed 65535")
        }
        // sockaddr_un.sun_path holds 108 bytes including the terminating NUL.
        guard !lookup.socketPath.isEmpty, lookup.socketPath.utf8.count < 108 else {
            throw fail("lookup.socket", "socket path must be 1 to 107 bytes long")
        }
        guard lookup.socketPath.hasPrefix("/") else {
            throw fail("lookup.socket", "socket path must be absolute")
        }
        for (index, rule) in redirects.enumerated() {
            let field = "redirect[\(index)]"
            // A target port that is itself redirected would loop every proxied packet.
            for other in redirects where other.proto == rule.proto && other.scope == rule.scope && other.ports.contains(rule.toPort) {
                throw fail(field, "target port \(rule.toPort) is itself redirected by \(other) (the proxy would redirect to itself)")
            }
            guard !rule.families.isEmpty else { throw fail("\(field).families", "no address family left") }
            for prefix in rule.sources + rule.destinations where !rule.families.contains(prefix.network.family) {
                throw fail(field, "prefix \(prefix) is of a family the rule does not cover")
            }
        }
        guard ["trace", "debug", "info", "notice", "warning", "error", "critical"].contains(logLevel) else {
            throw fail("log.level", "'\(logLevel)' is not one of trace, debug, info, notice, warning, error, critical")
        }
        if let listen = metrics.listen, MetricsAddress(listen) == nil {
            throw fail("metrics.listen", "'\(listen)' is not host:port (for example 127.0.0.1:9753 or [::1]:9753)")
        }
    }
}

/// `host:port` or `[v6]:port`, for the metrics listener.
public struct MetricsAddress: Equatable, Sendable {
    public var host: String
    public var port: Int

    public init?(_ text: String) {
        let hostPart: Substring
        let portPart: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else { return nil }
            hostPart = text[text.index(after: text.startIndex)..<close]
            portPart = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            hostPart = text[..<colon]
            portPart = text[text.index(after: colon)...]
        }
        guard !hostPart.isEmpty, let port = Int(portPart), (1...65535).contains(port) else { return nil }
        self.host = String(hostPart)
        self.port = port
    }
}
