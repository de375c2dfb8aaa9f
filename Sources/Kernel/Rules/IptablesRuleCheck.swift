import RedirectCore

/// Tells from `iptables-save -t raw` / `-t mangle` (and `-t nat` in kernel-nat mode) output
/// whether the daemon's rules are all in place: each of its chains present with as many rules
/// as it installed, and each jump to them from the built-in chains, as installed. A firewall
/// reload (`iptables -t raw -F`, `nft flush ruleset`, a full `iptables-restore`) takes some or
/// all of them away; counting the chains' rules is enough to see that, without comparing rule
/// text that iptables-save normalises. Jumps are compared as text: the generator spells their
/// matches as iptables-save prints them.
public enum IptablesRuleCheck {
    /// What of `ruleSet` is missing from `saved` (the concatenated `iptables-save -t TABLE`
    /// output of its family for the tables of its mode), one phrase each; empty when
    /// everything is there.
    public static func missing(_ ruleSet: IptablesRuleSet, saved: String) -> [String] {
        let saved = IptablesSavedRules(parsing: saved)
        let family = ruleSet.family == .ipv4 ? "iptables" : "ip6tables"
        var missing: [String] = []
        for jump in ruleSet.chains {
            let wanted = ruleSet.rules[jump]?.count ?? 0
            if !saved.contains(jump) {
                missing.append("\(family) \(jump.table) \(jump.chain) chain")
            } else if saved.ruleCount(jump) != wanted {
                missing.append("\(family) \(jump.table) \(jump.chain) rules (\(saved.ruleCount(jump)) of \(wanted))")
            }
            let rule = ruleSet.jumpRule(jump)
            if !saved.jumps.contains(where: { $0.table == jump.table && $0.rule == rule }) {
                missing.append("\(family) \(jump.table) \(jump.builtinChain) -> \(jump.chain) jump")
            }
        }
        return missing
    }
}
