import RedirectCore

/// Tells from `iptables-save -t raw` / `-t mangle` (and `-t nat` in kernel-nat mode) output whether the daemon's rules are all
/// in place: each of its chains present with as many rules as it installed, and each jump to
/// them from the built-in chains. A firewall reload (`iptables -t raw -F`, `nft flush
/// ruleset`, a full `iptables-restore`) takes some or all of them away; counting is enough to
/// see that, without comparing rule text that iptables-save normalises.
public enum IptablesRuleCheck {
    /// What of `ruleSet` is missing from `saved` (the concatenated `iptables-save -t raw` and
    /// `-t mangle` output of its family, and `-t nat` in kernel-nat mode), one phrase each; empty when everything is there.
    public static func missing(_ ruleSet: IptablesRuleSet, saved: String) -> [String] {
        var table = ""
        var chains = Set<String>()
        var counts: [String: Int] = [:]
        var jumps = Set<String>()
        let ours = Set(ChainJump.all.map(\.chain))
        for line in saved.split(separator: "\n") {
            if line.hasPrefix("*") {
                table = String(line.dropFirst())
            } else if line.hasPrefix(":") {
                let name = String(line.dropFirst().prefix { $0 != " " })
                if ours.contains(name) { chains.insert("\(table) \(name)") }
            } else if line.hasPrefix("-A ") {
                let words = line.split(separator: " ")
                guard words.count >= 2 else { continue }
                let chain = String(words[1])
                if ours.contains(chain) {
                    counts["\(table) \(chain)", default: 0] += 1
                } else if words.count == 4, words[2] == "-j", ours.contains(String(words[3])) {
                    jumps.insert("\(table) \(chain) \(words[3])")
                }
            }
        }
        let family = ruleSet.family == .ipv4 ? "iptables" : "ip6tables"
        var missing: [String] = []
        for jump in ruleSet.chains {
            let key = "\(jump.table) \(jump.chain)"
            let wanted = ruleSet.rules[jump]?.count ?? 0
            if !chains.contains(key) {
                missing.append("\(family) \(jump.table) \(jump.chain) chain")
            } else if counts[key, default: 0] != wanted {
                missing.append("\(family) \(jump.table) \(jump.chain) rules (\(counts[key, default: 0]) of \(wanted))")
            }
            if !jumps.contains("\(jump.table) \(jump.builtinChain) \(jump.chain)") {
                missing.append("\(family) \(jump.table) \(jump.builtinChain) -> \(jump.chain) jump")
            }
        }
        return missing
    }
}
