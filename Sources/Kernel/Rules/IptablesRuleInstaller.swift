import RedirectCore

/// Installs rules with iptables-restore / ip6tables-restore (`--noflush -w`), in the network
/// namespace of the calling thread. Each install or removal reads the daemon's tables once
/// with iptables-save and writes one transaction per family (`IptablesRuleSet.transaction`):
/// a handful of program runs, whatever was there before.
public final class IptablesRuleInstaller: RuleInstaller {
    public init() {}

    private struct Tools {
        var restore: String
        var save: String
    }

    private static func names(_ family: AddressFamily) -> (restore: String, save: String) {
        family == .ipv4 ? ("iptables-restore", "iptables-save") : ("ip6tables-restore", "ip6tables-save")
    }

    private func tools(_ family: AddressFamily) throws(KernelError) -> Tools {
        let names = Self.names(family)
        return Tools(restore: try ProgramRunner.locate(names.restore), save: try ProgramRunner.locate(names.save))
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
                try Self.apply(
                    read: { () throws(KernelError) in try saved(tools, tables: ChainJump.tables) }, build: ruleSet.transaction(from:),
                    write: { (input: String) throws(KernelError) in try restore(tools, input) })
            } else if let tools = try? self.tools(family) {
                try remove(tools)
            }
        }
    }

    /// One `iptables-save -t TABLE` per table of the mode, per family the rules cover: a few
    /// milliseconds, no lock taken (a concurrent iptables-restore commits atomically).
    public func missing(_ configuration: RuleSetConfiguration, orNftTable: Bool) throws(KernelError) -> [String] {
        var missing: [String] = []
        for family in AddressFamily.allCases {
            guard let ruleSet = try RuleGenerator.iptables(configuration, family: family) else { continue }
            let save = try ProgramRunner.locate(Self.names(family).save)
            missing += IptablesRuleCheck.missing(ruleSet, saved: try savedText(save, tables: ruleSet.tables))
        }
        if !missing.isEmpty, orNftTable, let nft = try? ProgramRunner.locate("nft"),
            let listed = try? ProgramRunner.run(nft, ["list", "table", "inet", "nfq_redirect"]), listed.status == 0
        {
            return []
        }
        return missing
    }

    /// Whether any chain of the daemon's is in the kernel, in either family (true when a family's
    /// iptables-restore is there but its iptables-save is not: it cannot tell).
    public func anyInstalled() throws(KernelError) -> Bool {
        for family in AddressFamily.allCases {
            let names = Self.names(family)
            guard let save = try? ProgramRunner.locate(names.save) else {
                if (try? ProgramRunner.locate(names.restore)) != nil { return true }  // cannot look: assume they may be there
                continue
            }
            let saved = IptablesSavedRules(parsing: try savedText(save, tables: ChainJump.tables))
            if !saved.chains.isEmpty { return true }
        }
        return false
    }

    public func remove() throws(KernelError) {
        for family in AddressFamily.allCases {
            guard let tools = try? self.tools(family) else { continue }  // nothing can be installed without them
            try remove(tools)
        }
    }

    private func remove(_ tools: Tools) throws(KernelError) {
        try Self.apply(
            read: { () throws(KernelError) in try saved(tools, tables: ChainJump.tables) }, build: IptablesRuleSet.removalTransaction(from:),
            write: { (input: String) throws(KernelError) in if !input.isEmpty { try restore(tools, input) } })
    }

    /// Reads what the kernel holds, builds the transaction from it and writes it; on a failed
    /// write, reads and writes once more. iptables-save takes no lock, so another program may
    /// change the daemon's jumps between the read and the write (a `-D` line whose rule has
    /// just gone fails its table's whole commit); the second read sees what it did. A failure
    /// that is not a race fails twice and is thrown.
    static func apply(
        read: () throws(KernelError) -> IptablesSavedRules, build: (IptablesSavedRules) -> String,
        write: (String) throws(KernelError) -> Void
    ) throws(KernelError) {
        do {
            try write(build(try read()))
        } catch .programFailed {
            try write(build(try read()))
        }
    }

    private func saved(_ tools: Tools, tables: [String]) throws(KernelError) -> IptablesSavedRules {
        IptablesSavedRules(parsing: try savedText(tools.save, tables: tables))
    }

    /// `iptables-save -t TABLE` for each table, concatenated. A table the kernel does not have
    /// (its module not loaded) prints nothing, which reads as no chains of ours.
    private func savedText(_ save: String, tables: [String]) throws(KernelError) -> String {
        var saved = ""
        for table in tables {
            let outcome = try ProgramRunner.run(save, ["-t", table])
            guard outcome.status == 0 else {
                throw .programFailed(command: "\(save) -t \(table)", status: outcome.status, output: outcome.output)
            }
            saved += outcome.output
        }
        return saved
    }

    private func restore(_ tools: Tools, _ input: String) throws(KernelError) {
        let arguments = ["--noflush", "-w"]
        let outcome = try ProgramRunner.run(tools.restore, arguments, input: input)
        guard outcome.status == 0 else {
            throw .programFailed(command: ([tools.restore] + arguments).joined(separator: " "), status: outcome.status, output: outcome.output)
        }
    }
}
