import RedirectCore

/// What `iptables-save` (one or more `-t TABLE` outputs, concatenated) says about the daemon's
/// chains: which of them exist, how many rules each holds, and every rule of a built-in chain
/// that jumps to one of them, as the exact text iptables-save printed.
///
/// The installer and the once-a-second check both read the kernel through this one parse.
/// Jump rules are compared as text: the generator writes each jump's matches in
/// iptables-save's own spelling (`IptablesRuleSet.jumpMatches`), so the rule it wants and the
/// rule the kernel holds print the same.
public struct IptablesSavedRules: Equatable, Sendable {
    /// One rule of a built-in chain whose target is one of the daemon's chains.
    public struct Jump: Equatable, Sendable {
        public var table: String
        public var target: String
        /// The rule without its `-A `: `PREROUTING -m conntrack --ctstate NEW -j NFQR-NEW-PREROUTING`.
        public var rule: String
    }

    /// "table chain" for each of the daemon's chains present.
    public private(set) var chains: Set<String> = []
    /// Rules per "table chain" of the daemon's.
    public private(set) var ruleCounts: [String: Int] = [:]
    public private(set) var jumps: [Jump] = []

    /// The chains a table has from the start; only jumps from these are the daemon's to manage.
    static let builtinChains: Set<Substring> = ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"]

    public init(parsing saved: String) {
        let ours = Set(ChainJump.all.map(\.chain))
        var table = ""
        for line in saved.split(separator: "\n", omittingEmptySubsequences: true) {
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
                    ruleCounts["\(table) \(chain)", default: 0] += 1
                } else if Self.builtinChains.contains(words[1]), words.count >= 4, words[words.count - 2] == "-j",
                    ours.contains(String(words[words.count - 1]))
                {
                    jumps.append(Jump(table: table, target: String(words[words.count - 1]), rule: String(line.dropFirst(3))))
                }
            }
        }
    }

    public func contains(_ chain: ChainJump) -> Bool { chains.contains("\(chain.table) \(chain.chain)") }

    public func ruleCount(_ chain: ChainJump) -> Int { ruleCounts["\(chain.table) \(chain.chain)", default: 0] }
}
