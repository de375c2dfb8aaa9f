import RedirectCore

/// The daemon's rules for one address family, as iptables rule specifications per own chain.
/// `restoreInput` renders them as one `iptables-restore --noflush` transaction.
public struct IptablesRuleSet: Equatable, Sendable {
    public var family: AddressFamily
    /// Rules of NFQR-PREROUTING (raw), NFQR-OUTPUT (raw), NFQR-REPLY (mangle), without `-A CHAIN`.
    public var rules: [ChainJump: [String]]

    /// The transaction that flushes the daemon's chains and refills them (declaring a chain
    /// creates it, or flushes it when it exists), plus `jumps` to insert at the top of their
    /// built-in chains. All or nothing: iptables-restore commits a table only if every line
    /// of it applies.
    public func restoreInput(insertingJumps jumps: [ChainJump] = []) -> String {
        var text = ""
        for table in ["raw", "mangle"] {
            let chains = ChainJump.all.filter { $0.table == table }
            text += "*\(table)\n"
            for chain in chains { text += ":\(chain.chain) - [0:0]\n" }
            for chain in chains { text += "-F \(chain.chain)\n" }
            for chain in chains {
                for rule in rules[chain] ?? [] { text += "-A \(chain.chain) \(rule)\n" }
            }
            for jump in jumps where jump.table == table { text += "-I \(jump.builtinChain) 1 -j \(jump.chain)\n" }
            text += "COMMIT\n"
        }
        return text
    }

    /// The transaction that deletes the daemon's chains (their jumps must be gone first).
    public static let removalInput: String = ["raw", "mangle"].map { table in
        let chains = ChainJump.all.filter { $0.table == table }
        return "*\(table)\n" + chains.map { ":\($0.chain) - [0:0]\n" }.joined() + chains.map { "-X \($0.chain)\n" }.joined() + "COMMIT\n"
    }.joined()
}
