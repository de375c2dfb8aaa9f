import RedirectCore

/// Turns redirect rules into firewall rules: pure functions, no system access.
///
/// Placement (see KERNEL-NOTES "Where to hook"): the original direction is queued in `raw`
/// (before conntrack) — PREROUTING for `.network` rules, OUTPUT for `.local` ones — and
/// the proxy's replies (source port == a rule's toPort) in `mangle OUTPUT`, after conntrack.
/// Packets to a toPort are queued too, so the daemon sees clients that dial the proxy
/// directly ("tracked, not redirected"). ICMP and ICMPv6 errors (`icmpErrorTypes`) are queued
/// in each chain that has rules of their family: the datapath translates the ones about its
/// flows (related traffic) and passes the rest. PREROUTING skips `lo`: packets on it were sent by
/// this host and already passed OUTPUT, where the kernel's REDIRECT would have judged them.
public enum RuleGenerator {
    /// The iptables rules for `family`, or nil when no rule applies to it.
    public static func iptables(_ configuration: RuleSetConfiguration, family: AddressFamily) throws(KernelError) -> IptablesRuleSet? {
        try configuration.validate()
        if let marks = configuration.kernelNAT { return kernelNATRules(configuration, marks: marks, family: family) }
        let original = queueTarget(configuration.originalQueues, bypass: configuration.failOpen)
        let reply = queueTarget(configuration.replyQueues, bypass: false)
        var rules: [ChainJump: [String]] = [:]
        var matched = false

        func add(_ rule: String, to chain: ChainJump) {
            if !(rules[chain] ?? []).contains(rule) { rules[chain, default: []].append(rule) }
        }

        add("-i lo -j RETURN", to: .preRouting)
        for mark in configuration.excludedMarks {
            add("-m mark --mark \(markText(mark)) -j RETURN", to: .preRouting)
            add("-m mark --mark \(markText(mark)) -j RETURN", to: .output)
        }
        for uid in configuration.excludedUserIDs { add("-m owner --uid-owner \(uid) -j RETURN", to: .output) }

        for rule in configuration.rules where rule.families.contains(family) {
            guard let sources = addresses(rule.sources, family: family), let destinations = addresses(rule.destinations, family: family) else {
                continue  // the rule is limited to addresses of the other family
            }
            matched = true
            let chain: ChainJump = rule.scope == .network ? .preRouting : .output
            for source in sources {
                for destination in destinations {
                    for ports in portMatches(rule.ports) {
                        var spec = "-p \(rule.proto)"
                        if let source { spec += " -s \(source)" }
                        if let destination { spec += " -d \(destination)" }
                        add("\(spec) \(ports) -j \(original)", to: chain)
                    }
                }
            }
            add("-p \(rule.proto) --dport \(rule.toPort) -j \(original)", to: chain)
            add("-p \(rule.proto) --sport \(rule.toPort) -j \(reply)", to: .reply)
        }
        // Related traffic: the ICMP errors that can concern a flow, after every flow rule. Always
        // with --queue-bypass (see `icmpErrorTypes`).
        let relatedOriginal = queueTarget(configuration.originalQueues, bypass: true)
        let relatedReply = queueTarget(configuration.replyQueues, bypass: true)
        let scopes = Set(configuration.rules.filter { $0.families.contains(family) && appliesTo(family, $0) }.map(\.scope))
        for type in icmpErrorTypes(family) {
            let match = family == .ipv4 ? "-p icmp --icmp-type \(type)" : "-p ipv6-icmp --icmpv6-type \(type)"
            if scopes.contains(.network) { add("\(match) -j \(relatedOriginal)", to: .preRouting) }
            if scopes.contains(.local) { add("\(match) -j \(relatedOriginal)", to: .output) }
            add("\(match) -j \(relatedReply)", to: .reply)
        }
        return matched ? IptablesRuleSet(family: family, rules: rules) : nil
    }

    /// Kernel-nat mode's rules: the first packet of a flow (ctstate NEW, so after conntrack, in
    /// mangle, and no mark of the daemon's on its conntrack entry yet) is queued with the same
    /// matches as the userspace mode's; the daemon's verdict marks it; the nat table's
    /// REDIRECT, jumped to at the nat hook that comes right after, acts on that mark, and
    /// CONNMARK keeps the mark on the conntrack entry, where the daemon's ctnetlink listener
    /// filters on it. Every later packet of the flow is NATed by conntrack alone and never
    /// queued; related ICMP errors are translated by the kernel's NAT. Nothing is queued for
    /// replies.
    ///
    /// Every packet of the host meets the raw and mangle jumps, so those carry the tests that
    /// keep a packet out (`jumpMatches`): a packet of a flow already handed over costs one
    /// rule per hook, as few as the base chains allow.
    private static func kernelNATRules(_ configuration: RuleSetConfiguration, marks: KernelNATMarks, family: AddressFamily) -> IptablesRuleSet? {
        let original = queueTarget(configuration.originalQueues, bypass: configuration.failOpen)
        var rules: [ChainJump: [String]] = [:]
        var matched = false
        func add(_ rule: String, to chain: ChainJump) {
            if !(rules[chain] ?? []).contains(rule) { rules[chain, default: []].append(rule) }
        }
        let maskText = hex(marks.mask)
        // Only a flow's first packet enters the queueing chains: conntrack calls it NEW and its
        // entry has none of the daemon's mark bits yet. Conntrack calls a flow NEW until it
        // sees a reply, so without the mark test every datagram of one-way UDP (and a SYN's
        // retransmissions) would come up again. Only TCP SYNs enter the events chains.
        var jumpMatches: [ChainJump: String] = [:]
        for chain in [ChainJump.newPreRouting, .newOutput] { jumpMatches[chain] = "-m connmark --mark 0x0/\(maskText) -m conntrack --ctstate NEW" }
        for chain in [ChainJump.eventsPreRouting, .eventsOutput] { jumpMatches[chain] = "-p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN" }
        add("-i lo -j RETURN", to: .newPreRouting)
        for mark in configuration.excludedMarks {
            add("-m mark --mark \(markText(mark)) -j RETURN", to: .newPreRouting)
            add("-m mark --mark \(markText(mark)) -j RETURN", to: .newOutput)
        }
        for uid in configuration.excludedUserIDs { add("-m owner --uid-owner \(uid) -j RETURN", to: .newOutput) }
        for chain in [ChainJump.natPreRouting, .natOutput] {
            add("-m mark --mark 0x0/\(maskText) -j RETURN", to: chain)
            add("-j CONNMARK --save-mark --nfmask \(maskText) --ctmask \(maskText)", to: chain)
        }
        for rule in configuration.rules where rule.families.contains(family) {
            guard let sources = addresses(rule.sources, family: family), let destinations = addresses(rule.destinations, family: family) else {
                continue
            }
            matched = true
            let queueChain: ChainJump = rule.scope == .network ? .newPreRouting : .newOutput
            let natChain: ChainJump = rule.scope == .network ? .natPreRouting : .natOutput
            let eventsChain: ChainJump = rule.scope == .network ? .eventsPreRouting : .eventsOutput
            for source in sources {
                for destination in destinations {
                    for ports in portMatches(rule.ports) {
                        var addresses = ""
                        if let source { addresses += " -s \(source)" }
                        if let destination { addresses += " -d \(destination)" }
                        let spec = "-p \(rule.proto)\(addresses)"
                        add("\(spec) \(ports) -j \(original)", to: queueChain)
                        if rule.proto == .tcp {
                            // A TCP entry would report every state change (about eight events a
                            // connection, each built by the kernel for every listener); the table
                            // needs its start, first reply, assurance and end. Only SYNs create
                            // entries, so only they carry the template.
                            add("-p tcp --syn\(addresses) \(ports) -j CT --ctevents new,reply,assured,destroy", to: eventsChain)
                        }
                    }
                }
            }
            add("-p \(rule.proto) --dport \(rule.toPort) -j \(original)", to: queueChain)
            if let value = marks.value(for: rule.toPort) {
                add("-p \(rule.proto) -m mark --mark \(hex(value))/\(maskText) -j REDIRECT --to-ports \(rule.toPort)", to: natChain)
            }
        }
        return matched ? IptablesRuleSet(family: family, rules: rules, chains: ChainJump.kernelNAT, jumpMatches: jumpMatches) : nil
    }

    /// The same rules as one nftables ruleset (`nft -f`), for hosts whose firewall is managed
    /// as nftables text. Both families in one `inet` table; the base chains sit at the raw
    /// (-300) and mangle (-150) priorities.
    public static func nftables(_ configuration: RuleSetConfiguration) throws(KernelError) -> String {
        try configuration.validate()
        guard configuration.kernelNAT == nil else {
            throw .invalidConfiguration("the nft form is for the userspace datapath; kernel-nat mode installs its iptables rules itself")
        }
        let original = nftQueue(configuration.originalQueues, bypass: configuration.failOpen)
        let reply = nftQueue(configuration.replyQueues, bypass: false)
        var preRouting: [String] = ["iif \"lo\" return"]
        var output: [String] = []
        var replies: [String] = []
        func add(_ rule: String, to chain: inout [String]) {
            if !chain.contains(rule) { chain.append(rule) }
        }
        for mark in configuration.excludedMarks {
            let match = mark.mask == 0xffff_ffff ? "meta mark \(hex(mark.value))" : "meta mark & \(hex(mark.mask)) == \(hex(mark.value & mark.mask))"
            add("\(match) return", to: &preRouting)
            add("\(match) return", to: &output)
        }
        for uid in configuration.excludedUserIDs { add("meta skuid \(uid) return", to: &output) }

        for rule in configuration.rules {
            let ports = rule.ports.ranges.map { $0.lowerBound == $0.upperBound ? "\($0.lowerBound)" : "\($0.lowerBound)-\($0.upperBound)" }
            let portMatch = ports.count == 1 ? ports[0] : "{ \(ports.joined(separator: ", ")) }"
            var any = false
            for family in AddressFamily.allCases where rule.families.contains(family) {
                guard let sources = addresses(rule.sources, family: family), let destinations = addresses(rule.destinations, family: family) else {
                    continue
                }
                any = true
                let keyword = family == .ipv4 ? "ip" : "ip6"
                var prefix =
                    rule.families.count == 2 && sources == [nil] && destinations == [nil] ? "" : "meta nfproto \(family == .ipv4 ? "ipv4" : "ipv6") "
                if sources != [nil] { prefix += "\(keyword) saddr \(setText(sources.compactMap { $0 })) " }
                if destinations != [nil] { prefix += "\(keyword) daddr \(setText(destinations.compactMap { $0 })) " }
                let line = "\(prefix)\(rule.proto) dport \(portMatch) \(original)"
                if rule.scope == .network { add(line, to: &preRouting) } else { add(line, to: &output) }
                if prefix.isEmpty { break }  // one line served both families
            }
            guard any else { continue }
            if rule.scope == .network {
                add("\(rule.proto) dport \(rule.toPort) \(original)", to: &preRouting)
            } else {
                add("\(rule.proto) dport \(rule.toPort) \(original)", to: &output)
            }
            add("\(rule.proto) sport \(rule.toPort) \(reply)", to: &replies)
        }

        // Related traffic, per family that has rules in the chain's scope: after every flow rule.
        for family in AddressFamily.allCases {
            let scopes = Set(configuration.rules.filter { $0.families.contains(family) && appliesTo(family, $0) }.map(\.scope))
            guard !scopes.isEmpty else { continue }
            let line = "\(family == .ipv4 ? "icmp" : "icmpv6") type { \(icmpErrorTypes(family).joined(separator: ", ")) }"
            if scopes.contains(.network) { add("\(line) \(nftQueue(configuration.originalQueues, bypass: true))", to: &preRouting) }
            if scopes.contains(.local) { add("\(line) \(nftQueue(configuration.originalQueues, bypass: true))", to: &output) }
            add("\(line) \(nftQueue(configuration.replyQueues, bypass: true))", to: &replies)
        }

        func chain(_ name: String, hook: String, priority: Int, _ rules: [String]) -> String {
            "\tchain \(name) {\n\t\ttype filter hook \(hook) priority \(priority); policy accept;\n"
                + rules.map { "\t\t\($0)\n" }.joined() + "\t}\n"
        }
        return "table inet nfq_redirect {\n"
            + chain("prerouting", hook: "prerouting", priority: -300, preRouting)
            + chain("output", hook: "output", priority: -300, output)
            + chain("reply", hook: "output", priority: -150, replies)
            + "}\n"
    }

    /// The ICMP error types that can quote a packet of a flow (RFC 792, RFC 4443), which the
    /// daemon translates as the kernel's NAT translates RELATED traffic. Not echo, not neighbour
    /// discovery, not redirects: ordinary ICMP stays off the datapath.
    ///
    /// Their rules always bypass (`--queue-bypass`), fail-open or not: most errors a host sees
    /// or sends concern other traffic (a router's own "fragmentation needed" for forwarded
    /// packets), and with no daemon bound they must pass as they did before it, untranslated,
    /// rather than be dropped; at worst an error about a redirected flow then misses its socket.
    static func icmpErrorTypes(_ family: AddressFamily) -> [String] {
        family == .ipv4
            ? ["destination-unreachable", "time-exceeded", "parameter-problem"]
            : ["destination-unreachable", "packet-too-big", "time-exceeded", "parameter-problem"]
    }

    /// Whether `rule` gives any rule for `family` (its address lists may name only the other family).
    private static func appliesTo(_ family: AddressFamily, _ rule: RedirectRule) -> Bool {
        addresses(rule.sources, family: family) != nil && addresses(rule.destinations, family: family) != nil
    }

    /// The CIDRs of one family as rule arguments: [nil] for "any", nil when the rule names
    /// only addresses of the other family (it does not apply to this one).
    private static func addresses(_ cidrs: [CIDR], family: AddressFamily) -> [String?]? {
        if cidrs.isEmpty { return [nil] }
        let matching = cidrs.filter { $0.network.family == family }
        return matching.isEmpty ? nil : matching.map(\.description)
    }

    /// `--dport 80`, `--dport 8000:8100`, or multiport matches of at most 15 ports each (a
    /// range counts twice, as xt_multiport counts them).
    private static func portMatches(_ ports: PortSet) -> [String] {
        func text(_ range: ClosedRange<UInt16>) -> String {
            range.lowerBound == range.upperBound ? "\(range.lowerBound)" : "\(range.lowerBound):\(range.upperBound)"
        }
        if ports.ranges.count == 1 { return ["--dport \(text(ports.ranges[0]))"] }
        var matches: [String] = []
        var chunk: [String] = []
        var slots = 0
        for range in ports.ranges {
            let cost = range.lowerBound == range.upperBound ? 1 : 2
            if slots + cost > 15 {
                matches.append(chunk.count == 1 ? "--dport \(chunk[0])" : "-m multiport --dports \(chunk.joined(separator: ","))")
                chunk = []
                slots = 0
            }
            chunk.append(text(range))
            slots += cost
        }
        if !chunk.isEmpty {
            matches.append(chunk.count == 1 ? "--dport \(chunk[0])" : "-m multiport --dports \(chunk.joined(separator: ","))")
        }
        return matches
    }

    private static func queueTarget(_ queues: ClosedRange<UInt16>, bypass: Bool) -> String {
        let target =
            queues.count == 1 ? "NFQUEUE --queue-num \(queues.lowerBound)" : "NFQUEUE --queue-balance \(queues.lowerBound):\(queues.upperBound)"
        return bypass ? target + " --queue-bypass" : target
    }

    private static func nftQueue(_ queues: ClosedRange<UInt16>, bypass: Bool) -> String {
        let numbers = queues.count == 1 ? "\(queues.lowerBound)" : "\(queues.lowerBound)-\(queues.upperBound)"
        return bypass ? "queue num \(numbers) bypass" : "queue num \(numbers)"
    }

    /// iptables-save's form: `0x1` for a full mask, `0x1/0xff` otherwise.
    private static func markText(_ mark: FirewallMark) -> String {
        mark.mask == 0xffff_ffff ? hex(mark.value) : "\(hex(mark.value))/\(hex(mark.mask))"
    }

    private static func hex(_ value: UInt32) -> String { "0x" + String(value, radix: 16) }

    private static func setText(_ items: [String]) -> String {
        items.count == 1 ? items[0] : "{ \(items.joined(separator: ", ")) }"
    }
}
