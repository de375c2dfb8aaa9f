import RedirectCore

/// The daemon's rules for one address family, as iptables rule specifications per own chain.
/// `restoreInput` renders them as one `iptables-restore --noflush` transaction.
public struct IptablesRuleSet: Equatable, Sendable {
    public var family: AddressFamily
    /// Rules per chain of the mode (see `chains`), without `-A CHAIN`.
    public var rules: [ChainJump: [String]]
    /// The mode's chains: `ChainJump.userspace` (NFQR-PREROUTING and NFQR-OUTPUT in raw,
    /// NFQR-REPLY in mangle) or `ChainJump.kernelNAT`.
    public var chains: [ChainJump]

    public init(family: AddressFamily, rules: [ChainJump: [String]], chains: [ChainJump] = ChainJump.userspace) {
        self.family = family
        self.rules = rules
        self.chains = chains
    }

    /// The tables the mode's chains are in, in iptables-restore order.
    public var tables: [String] { ChainJump.tables.filter { table in chains.contains { $0.table == table } } }

    /// The transaction that flushes the daemon's chains and refills them (declaring a chain
    /// creates it, or flushes it when it exists), plus `jumps` to insert at the top of their
    /// built-in chains. All or nothing: iptables-restore commits a table only if every line
    /// of it applies.
    public func restoreInput(insertingJumps jumps: [ChainJump] = []) -> String {
        var text = ""
        for table in tables {
            let chains = self.chains.filter { $0.table == table }
            text += "*\(table)\n"
            for chain in chains { text += ":\(chain.chain) - [0:0]\n" }
            for chain in chains { text += "-F \(chain.chain)\n" }
            for chain in chains {
                for rule in rules[chain] ?? [] { text += "-A \(chain.chain) \(rule)\n" }
            }
            for jump in jumps where jump.table == table && self.chains.contains(jump) { text += "-I \(jump.builtinChain) 1 -j \(jump.chain)\n" }
            text += "COMMIT\n"
        }
        return text
    }

    /// The transaction that deletes `chains` (their jumps must be gone first); by default every
    /// chain of either mode.
    public static func removalInput(_ chains: [ChainJump] = ChainJump.all) -> String {
        ChainJump.tables.compactMap { table -> String? in
            let inTable = chains.filter { $0.table == table }
            guard !inTable.isEmpty else { return nil }
            return "*\(table)\n" + inTable.map { ":\($0.chain) - [0:0]\n" }.joined() + inTable.map { "-X \($0.chain)\n" }.joined() + "COMMIT\n"
        }.joined()
    }
}
