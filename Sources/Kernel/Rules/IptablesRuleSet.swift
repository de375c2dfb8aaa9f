import RedirectCore

/// The daemon's rules for one address family, as iptables rule specifications per own chain.
/// `restoreInput` renders them as one `iptables-restore --noflush` transaction;
/// `transaction(from:)` is the one that brings what the kernel holds to them.
public struct IptablesRuleSet: Equatable, Sendable {
    public var family: AddressFamily
    /// Rules per chain of the mode (see `chains`), without `-A CHAIN`.
    public var rules: [ChainJump: [String]]
    /// The mode's chains: `ChainJump.userspace` (NFQR-PREROUTING and NFQR-OUTPUT in raw,
    /// NFQR-REPLY in mangle) or `ChainJump.kernelNAT`.
    public var chains: [ChainJump]
    /// What the built-in chain's jump to a chain matches, so that a packet that would only
    /// return from the chain never enters it; none (every packet jumps) when absent. Spelt
    /// as iptables-save prints it (`-p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN`, not
    /// `--syn`): the installer and the check compare jumps to the kernel's as text.
    public var jumpMatches: [ChainJump: String]

    public init(
        family: AddressFamily, rules: [ChainJump: [String]], chains: [ChainJump] = ChainJump.userspace, jumpMatches: [ChainJump: String] = [:]
    ) {
        self.family = family
        self.rules = rules
        self.chains = chains
        self.jumpMatches = jumpMatches
    }

    /// The tables the mode's chains are in, in iptables-restore order.
    public var tables: [String] { ChainJump.tables.filter { table in chains.contains { $0.table == table } } }

    /// The jump rule to `chain`, without `-A`/`-I`: `PREROUTING -j NFQR-PREROUTING`.
    public func jumpRule(_ chain: ChainJump) -> String { "\(chain.builtinChain)\(jumpSpecification(chain))" }

    /// ` -m conntrack --ctstate NEW -j CHAIN`: the jump rule after its built-in chain's name.
    private func jumpSpecification(_ chain: ChainJump) -> String {
        let matches = jumpMatches[chain].map { $0.isEmpty ? "" : " \($0)" } ?? ""
        return "\(matches) -j \(chain.chain)"
    }

    /// The transaction that flushes the daemon's chains and refills them (declaring a chain
    /// creates it, or flushes it when it exists), plus `jumps` to insert at the top of their
    /// built-in chains: what `nfq-redirect rules` prints. All or nothing: iptables-restore
    /// commits a table only if every line of it applies.
    public func restoreInput(insertingJumps jumps: [ChainJump] = []) -> String {
        tables.map { table in tableInput(table, deleting: [], inserting: jumps, removing: []) }.joined()
    }

    /// The transaction that brings the kernel, as `saved` (`iptables-save -t raw`, `-t mangle`
    /// and `-t nat` of this family) shows it, to these rules, one commit per table:
    /// - the mode's chains are refilled;
    /// - a jump to them that is already there, as wanted, stays where it is (an operator
    ///   may have put rules of their own above it);
    /// - every other jump to a chain of the daemon's goes: a duplicate, an older form with
    ///   other matches, or one to the other mode's chains, which are deleted;
    /// - a wanted jump not there is inserted at the top of its built-in chain.
    public func transaction(from saved: IptablesSavedRules) -> String {
        var kept = Set<ChainJump>()
        var deletions: [IptablesSavedRules.Jump] = []
        for jump in saved.jumps {
            if let chain = chains.first(where: { $0.table == jump.table && $0.chain == jump.target }), jumpRule(chain) == jump.rule,
                !kept.contains(chain)
            {
                kept.insert(chain)
            } else {
                deletions.append(jump)
            }
        }
        let stale = ChainJump.all.filter { !chains.contains($0) && saved.contains($0) }
        return ChainJump.tables.compactMap { table -> String? in
            let deleting = deletions.filter { $0.table == table }
            let removing = stale.filter { $0.table == table }
            guard tables.contains(table) || !deleting.isEmpty || !removing.isEmpty else { return nil }
            return tableInput(table, deleting: deleting, inserting: chains.filter { !kept.contains($0) }, removing: removing)
        }.joined()
    }

    /// The transaction that deletes every chain of the daemon's that `saved` shows, with every
    /// jump to them first; empty when there is none.
    public static func removalTransaction(from saved: IptablesSavedRules) -> String {
        IptablesRuleSet(family: .ipv4, rules: [:], chains: []).transaction(from: saved)
    }

    private func tableInput(_ table: String, deleting: [IptablesSavedRules.Jump], inserting jumps: [ChainJump], removing stale: [ChainJump]) -> String
    {
        let chains = self.chains.filter { $0.table == table }
        var text = "*\(table)\n"
        for chain in chains + stale { text += ":\(chain.chain) - [0:0]\n" }
        for chain in chains { text += "-F \(chain.chain)\n" }
        for chain in chains {
            for rule in rules[chain] ?? [] { text += "-A \(chain.chain) \(rule)\n" }
        }
        for jump in deleting { text += "-D \(jump.rule)\n" }
        for jump in jumps where jump.table == table && chains.contains(jump) { text += "-I \(jump.builtinChain) 1\(jumpSpecification(jump))\n" }
        for chain in stale { text += "-X \(chain.chain)\n" }
        return text + "COMMIT\n"
    }
}
