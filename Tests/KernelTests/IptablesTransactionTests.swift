import RedirectCore
import XCTest

@testable import Kernel

/// The transaction the installer writes, from what iptables-save showed: a fresh install, a
/// reinstall that changes nothing, an upgrade from other jump matches, a change of mode and
/// a removal. iptables-save's spelling is the kernel's (iptables-nft 1.8.9, checked in a
/// namespace); the root tests apply the same transactions to the real kernel.
final class IptablesTransactionTests: XCTestCase {
    private let userspace = RuleSetConfiguration(rules: [try! RedirectRule(parsing: "tcp:80:8080", scope: .network)])
    private var kernelNAT: RuleSetConfiguration {
        var configuration = userspace
        configuration.kernelNAT = KernelNATMarks(mask: 0x0ff0_0000, ports: [8080])
        return configuration
    }

    private func ruleSet(_ configuration: RuleSetConfiguration) throws -> IptablesRuleSet {
        try XCTUnwrap(try RuleGenerator.iptables(configuration, family: .ipv4))
    }

    /// iptables-save's text for `ruleSet` as installed: its chains, rules and jumps.
    private func installedText(_ ruleSet: IptablesRuleSet, jumps: [String]? = nil) -> String {
        ChainJump.tables.map { table in
            let chains = ruleSet.chains.filter { $0.table == table }
            var text = "*\(table)\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
            for chain in chains { text += ":\(chain.chain) - [0:0]\n" }
            for rule in jumps ?? chains.map(ruleSet.jumpRule) where chains.contains(where: { rule.hasSuffix("-j \($0.chain)") }) {
                text += "-A \(rule)\n"
            }
            for chain in chains { for rule in ruleSet.rules[chain] ?? [] { text += "-A \(chain.chain) \(rule)\n" } }
            return text + "COMMIT\n"
        }.joined()
    }

    private func lines(_ text: String, starting prefix: String) -> [String] {
        text.split(separator: "\n").map(String.init).filter { $0.hasPrefix(prefix) }
    }

    func testAFreshInstallInsertsEveryJumpWithItsMatches() throws {
        let rules = try ruleSet(kernelNAT)
        let transaction = rules.transaction(from: IptablesSavedRules(parsing: ""))
        XCTAssertEqual(transaction, rules.restoreInput(insertingJumps: rules.chains), "from nothing: what `nfq-redirect rules` prints")
        XCTAssertEqual(
            lines(transaction, starting: "-I "),
            [
                "-I PREROUTING 1 -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j NFQR-EV-PREROUTING",
                "-I OUTPUT 1 -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j NFQR-EV-OUTPUT",
                "-I PREROUTING 1 -m connmark --mark 0x0/0xff00000 -m conntrack --ctstate NEW -j NFQR-NEW-PREROUTING",
                "-I OUTPUT 1 -m connmark --mark 0x0/0xff00000 -m conntrack --ctstate NEW -j NFQR-NEW-OUTPUT",
                "-I PREROUTING 1 -j NFQR-NAT-PREROUTING",
                "-I OUTPUT 1 -j NFQR-NAT-OUTPUT",
            ])
        XCTAssertEqual(lines(transaction, starting: "-D ") + lines(transaction, starting: "-X "), [])
    }

    func testAReinstallKeepsTheJumpsWhereTheyAre() throws {
        for configuration in [userspace, kernelNAT] {
            let rules = try ruleSet(configuration)
            let saved = IptablesSavedRules(parsing: installedText(rules))
            XCTAssertEqual(saved.jumps.count, rules.chains.count)
            let transaction = rules.transaction(from: saved)
            XCTAssertEqual(lines(transaction, starting: "-I ") + lines(transaction, starting: "-D ") + lines(transaction, starting: "-X "), [])
            XCTAssertEqual(lines(transaction, starting: "-F ").count, rules.chains.count, "the chains are refilled")
            XCTAssertEqual(IptablesRuleCheck.missing(rules, saved: installedText(rules)), [])
        }
    }

    func testJumpsOfAnEarlierFormAndDuplicatesAreReplaced() throws {
        let rules = try ruleSet(kernelNAT)
        // An earlier version jumped to every chain unconditionally; and one jump is doubled.
        let plain = rules.chains.map { "\($0.builtinChain) -j \($0.chain)" } + ["PREROUTING -j NFQR-NAT-PREROUTING"]
        let saved = IptablesSavedRules(parsing: installedText(rules, jumps: plain))
        XCTAssertEqual(
            IptablesRuleCheck.missing(rules, saved: installedText(rules, jumps: plain)),
            [
                "iptables raw PREROUTING -> NFQR-EV-PREROUTING jump", "iptables raw OUTPUT -> NFQR-EV-OUTPUT jump",
                "iptables mangle PREROUTING -> NFQR-NEW-PREROUTING jump", "iptables mangle OUTPUT -> NFQR-NEW-OUTPUT jump",
            ])
        let transaction = rules.transaction(from: saved)
        XCTAssertEqual(
            lines(transaction, starting: "-D "),
            [
                "-D PREROUTING -j NFQR-EV-PREROUTING", "-D OUTPUT -j NFQR-EV-OUTPUT",
                "-D PREROUTING -j NFQR-NEW-PREROUTING", "-D OUTPUT -j NFQR-NEW-OUTPUT",
                "-D PREROUTING -j NFQR-NAT-PREROUTING",
            ])
        XCTAssertEqual(lines(transaction, starting: "-I ").count, 4, "the nat jumps, plain in both forms, stay")
    }

    func testAChangeOfModeRemovesTheOtherModesChains() throws {
        let before = try ruleSet(userspace)
        let after = try ruleSet(kernelNAT)
        let transaction = after.transaction(from: IptablesSavedRules(parsing: installedText(before)))
        XCTAssertEqual(
            lines(transaction, starting: "-D "),
            ["-D PREROUTING -j NFQR-PREROUTING", "-D OUTPUT -j NFQR-OUTPUT", "-D OUTPUT -j NFQR-REPLY"])
        XCTAssertEqual(lines(transaction, starting: "-X "), ["-X NFQR-PREROUTING", "-X NFQR-OUTPUT", "-X NFQR-REPLY"])
        // Deletions come before the chain goes, in the same commit.
        let raw = String(transaction[..<transaction.range(of: "COMMIT")!.lowerBound])
        XCTAssertLessThan(raw.range(of: "-D PREROUTING")!.lowerBound, raw.range(of: "-X NFQR-PREROUTING")!.lowerBound)
        XCTAssertTrue(raw.contains(":NFQR-PREROUTING - [0:0]\n"), "declared (flushed) before it is deleted")
    }

    func testRemovalTakesEverythingOfEitherMode() throws {
        let both = installedText(try ruleSet(userspace)) + installedText(try ruleSet(kernelNAT))
        let transaction = IptablesRuleSet.removalTransaction(from: IptablesSavedRules(parsing: both))
        XCTAssertEqual(lines(transaction, starting: "-D ").count, ChainJump.all.count)
        XCTAssertEqual(lines(transaction, starting: "-X ").map { String($0.dropFirst(3)) }.sorted(), ChainJump.all.map(\.chain).sorted())
        XCTAssertEqual(lines(transaction, starting: "-A ") + lines(transaction, starting: "-I "), [])
        XCTAssertEqual(IptablesRuleSet.removalTransaction(from: IptablesSavedRules(parsing: "")), "", "nothing there: nothing to run")
    }

    func testOnlyBuiltinChainsJumpsAreManaged() {
        let saved = IptablesSavedRules(
            parsing: """
                *raw
                :PREROUTING ACCEPT [0:0]
                :NFQR-PREROUTING - [0:0]
                :MINE - [0:0]
                -A PREROUTING -j MINE
                -A MINE -j NFQR-PREROUTING
                -A PREROUTING -m comment --comment "kept by ops" -j NFQR-PREROUTING
                COMMIT
                """)
        XCTAssertEqual(
            saved.jumps, [.init(table: "raw", target: "NFQR-PREROUTING", rule: "PREROUTING -m comment --comment \"kept by ops\" -j NFQR-PREROUTING")])
        XCTAssertEqual(saved.ruleCount(.preRouting), 0)
        XCTAssertTrue(saved.contains(.preRouting))
    }

    func testAWriteThatLostARaceIsBuiltFromAFreshRead() throws {
        let rules = try ruleSet(kernelNAT)
        // The first read still shows an earlier form's jump; another program deletes it before
        // the write, whose `-D` line then fails the commit.
        let reads = [installedText(rules, jumps: ["PREROUTING -j NFQR-NEW-PREROUTING"]), ""]
        var readCount = 0
        var written: [String] = []
        let failure = KernelError.programFailed(command: "iptables-restore --noflush -w", status: 1, output: "line 9 failed")
        try IptablesRuleInstaller.apply(
            read: { () throws(KernelError) in
                readCount += 1
                return IptablesSavedRules(parsing: reads[readCount - 1])
            }, build: rules.transaction(from:),
            write: { (input: String) throws(KernelError) in
                written.append(input)
                if written.count == 1 { throw failure }
            })
        XCTAssertEqual(readCount, 2)
        XCTAssertEqual(written.count, 2)
        XCTAssertTrue(written[0].contains("-D PREROUTING -j NFQR-NEW-PREROUTING"))
        XCTAssertEqual(written[1], rules.restoreInput(insertingJumps: rules.chains), "built from what the second read saw")

        // A failure that is not a race fails again and is thrown; one of another kind at once.
        var attempts = 0
        XCTAssertThrowsError(
            try IptablesRuleInstaller.apply(
                read: { IptablesSavedRules(parsing: "") }, build: rules.transaction(from:),
                write: { (_: String) throws(KernelError) in
                    attempts += 1
                    throw failure
                }))
        XCTAssertEqual(attempts, 2)
        attempts = 0
        XCTAssertThrowsError(
            try IptablesRuleInstaller.apply(
                read: { IptablesSavedRules(parsing: "") }, build: rules.transaction(from:),
                write: { (_: String) throws(KernelError) in
                    attempts += 1
                    throw KernelError.programNotFound(name: "iptables-restore", searchPath: "/usr/sbin")
                }))
        XCTAssertEqual(attempts, 1)
    }
}
