import RedirectCore

/// Installs rules with iptables-restore / ip6tables-restore (`--noflush -w`) and checks
/// jumps with `iptables -C`, in the network namespace of the calling thread.
public final class IptablesRuleInstaller: RuleInstaller {
    public init() {}

    private struct Tools {
        var command: String
        var restore: String
    }

    private static func names(_ family: AddressFamily) -> (command: String, restore: String) {
        family == .ipv4 ? ("iptables", "iptables-restore") : ("ip6tables", "ip6tables-restore")
    }

    /// iptables-save / ip6tables-save, for reading the rules back (the once-a-second check).
    /// Looked up only there: installing and removing never need it.
    private static func save(_ family: AddressFamily) throws(KernelError) -> String {
        try ProgramRunner.locate(family == .ipv4 ? "iptables-save" : "ip6tables-save")
    }

    private func tools(_ family: AddressFamily) throws(KernelError) -> Tools {
        let names = Self.names(family)
        return Tools(command: try ProgramRunner.locate(names.command), restore: try ProgramRunner.locate(names.restore))
    }

    public func checkAvailable(for configuration: RuleSetConfiguration) throws(KernelError) {
        for family in AddressFamily.allCases where try RuleGenerator.iptables(configuration, family: family) != nil {
            _ = try tools(family)
        }
    }

    public func install(_ configuration: RuleSetConfiguration) throws(KernelError) {
        for family in AddressFamily.allCases {
            if let ruleSet = try RuleGenerator.iptables(configuration, family: family) {
                let tools = try tools(family)
                try restore(tools, ruleSet.restoreInput())
                var missing: [ChainJump] = []
                for jump in ruleSet.chains where try !jumpExists(jump, tools) { missing.append(jump) }
                if !missing.isEmpty {
                    try restore(tools, ruleSet.restoreInput(insertingJumps: missing))
                }
                // The other mode's chains go (a restart that changed the datapath mode).
                try remove(tools, chains: ChainJump.all.filter { !ruleSet.chains.contains($0) })
            } else if let tools = try? self.tools(family) {
                try remove(tools)
            }
        }
    }

    /// One `iptables-save -t raw` and one `-t mangle` per family the rules cover: a few
    /// milliseconds, no lock taken (a concurrent iptables-restore commits atomically).
    public func missing(_ configuration: RuleSetConfiguration, orNftTable: Bool) throws(KernelError) -> [String] {
        var missing: [String] = []
        for family in AddressFamily.allCases {
            guard let ruleSet = try RuleGenerator.iptables(configuration, family: family) else { continue }
            let save = try Self.save(family)
            var saved = ""
            for table in ruleSet.tables {
                let outcome = try ProgramRunner.run(save, ["-t", table])
                guard outcome.status == 0 else {
                    throw .programFailed(command: "\(save) -t \(table)", status: outcome.status, output: outcome.output)
                }
                saved += outcome.output
            }
            missing += IptablesRuleCheck.missing(ruleSet, saved: saved)
        }
        if !missing.isEmpty, orNftTable, let nft = try? ProgramRunner.locate("nft"),
            let listed = try? ProgramRunner.run(nft, ["list", "table", "inet", "nfq_redirect"]), listed.status == 0
        {
            return []
        }
        return missing
    }

    /// Whether any chain of the daemon's is in the kernel, in either family (true when a family's
    /// iptables is there but its iptables-save is not: it cannot tell).
    public func anyInstalled() throws(KernelError) -> Bool {
        let ours = ChainJump.all.map { ":\($0.chain) " }
        for family in AddressFamily.allCases {
            guard let save = try? Self.save(family) else {
                if (try? tools(family)) != nil { return true }  // cannot look: assume they may be there
                continue
            }
            for table in ChainJump.tables {
                let outcome = try ProgramRunner.run(save, ["-t", table])
                if outcome.status == 0, outcome.output.split(separator: "\n").contains(where: { line in ours.contains { line.hasPrefix($0) } }) {
                    return true
                }
            }
        }
        return false
    }

    public func remove() throws(KernelError) {
        for family in AddressFamily.allCases {
            guard let tools = try? self.tools(family) else { continue }  // nothing can be installed without them
            try remove(tools)
        }
    }

    private func remove(_ tools: Tools, chains: [ChainJump] = ChainJump.all) throws(KernelError) {
        var present: [ChainJump] = []
        for jump in chains {
            // -C fails with status 2 when our chain does not exist; then no jump to it can either.
            guard try chainExists(jump, tools) else { continue }
            present.append(jump)
            while try jumpExists(jump, tools) {
                try run(tools.command, ["-w", "-t", jump.table, "-D", jump.builtinChain, "-j", jump.chain])
            }
        }
        if !present.isEmpty { try restore(tools, IptablesRuleSet.removalInput(present)) }
    }

    /// `iptables -S CHAIN`: status 0 when the chain exists.
    private func chainExists(_ jump: ChainJump, _ tools: Tools) throws(KernelError) -> Bool {
        try ProgramRunner.run(tools.command, ["-w", "-t", jump.table, "-S", jump.chain]).status == 0
    }

    /// `iptables -C`: status 0 present, 1 absent, 2 when the target chain does not exist.
    private func jumpExists(_ jump: ChainJump, _ tools: Tools) throws(KernelError) -> Bool {
        let arguments = ["-w", "-t", jump.table, "-C", jump.builtinChain, "-j", jump.chain]
        let outcome = try ProgramRunner.run(tools.command, arguments)
        switch outcome.status {
        case 0: return true
        case 1: return false
        case 2 where outcome.output.contains("does not exist"): return false
        default:
            throw .programFailed(command: ([tools.command] + arguments).joined(separator: " "), status: outcome.status, output: outcome.output)
        }
    }

    private func restore(_ tools: Tools, _ input: String) throws(KernelError) {
        try run(tools.restore, ["--noflush", "-w"], input: input)
    }

    private func run(_ path: String, _ arguments: [String], input: String = "") throws(KernelError) {
        let outcome = try ProgramRunner.run(path, arguments, input: input)
        guard outcome.status == 0 else {
            throw .programFailed(command: ([path] + arguments).joined(separator: " "), status: outcome.status, output: outcome.output)
        }
    }
}
