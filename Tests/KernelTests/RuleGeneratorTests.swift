import KernelTesting
import RedirectCore
import XCTest

@testable import Kernel

final class RuleGeneratorTests: XCTestCase {
    private let mixed = RuleSetConfiguration(
        rules: [
            try! RedirectRule(parsing: "tcp:80,443,8000-8100:8080", scope: .network),
            try! RedirectRule(parsing: "udp:53:5353", scope: .local),
        ],
        firstQueue: 4, queueCount: 2, failOpen: true,
        excludedMarks: [FirewallMark(value: 0x10, mask: 0xf0), FirewallMark(value: 7)], excludedUserIDs: [995])

    func testIptablesRestoreGolden() throws {
        let ruleSet = try XCTUnwrap(try RuleGenerator.iptables(mixed, family: .ipv4))
        XCTAssertEqual(
            ruleSet.restoreInput(insertingJumps: ChainJump.all),
            """
            *raw
            :NFQR-PREROUTING - [0:0]
            :NFQR-OUTPUT - [0:0]
            -F NFQR-PREROUTING
            -F NFQR-OUTPUT
            -A NFQR-PREROUTING -i lo -j RETURN
            -A NFQR-PREROUTING -m mark --mark 0x10/0xf0 -j RETURN
            -A NFQR-PREROUTING -m mark --mark 0x7 -j RETURN
            -A NFQR-PREROUTING -p tcp -m multiport --dports 80,443,8000:8100 -j NFQUEUE --queue-balance 4:5 --queue-bypass
            -A NFQR-PREROUTING -p tcp --dport 8080 -j NFQUEUE --queue-balance 4:5 --queue-bypass
            -A NFQR-PREROUTING -p icmp --icmp-type destination-unreachable -j NFQUEUE --queue-balance 4:5 --queue-bypass
            -A NFQR-PREROUTING -p icmp --icmp-type time-exceeded -j NFQUEUE --queue-balance 4:5 --queue-bypass
            -A NFQR-PREROUTING -p icmp --icmp-type parameter-problem -j NFQUEUE --queue-balance 4:5 --queue-bypass
            -A NFQR-OUTPUT -m mark --mark 0x10/0xf0 -j RETURN
            -A NFQR-OUTPUT -m mark --mark 0x7 -j RETURN
            -A NFQR-OUTPUT -m owner --uid-owner 995 -j RETURN
            -A NFQR-OUTPUT -p udp --dport 53 -j NFQUEUE --queue-balance 4:5 --queue-bypass
            -A NFQR-OUTPUT -p udp --dport 5353 -j NFQUEUE --queue-balance 4:5 --queue-bypass
            -A NFQR-OUTPUT -p icmp --icmp-type destination-unreachable -j NFQUEUE --queue-balance 4:5 --queue-bypass
            -A NFQR-OUTPUT -p icmp --icmp-type time-exceeded -j NFQUEUE --queue-balance 4:5 --queue-bypass
            -A NFQR-OUTPUT -p icmp --icmp-type parameter-problem -j NFQUEUE --queue-balance 4:5 --queue-bypass
            -I PREROUTING 1 -j NFQR-PREROUTING
            -I OUTPUT 1 -j NFQR-OUTPUT
            COMMIT
            *mangle
            :NFQR-REPLY - [0:0]
            -F NFQR-REPLY
            -A NFQR-REPLY -p tcp --sport 8080 -j NFQUEUE --queue-balance 6:7
            -A NFQR-REPLY -p udp --sport 5353 -j NFQUEUE --queue-balance 6:7
            -A NFQR-REPLY -p icmp --icmp-type destination-unreachable -j NFQUEUE --queue-balance 6:7 --queue-bypass
            -A NFQR-REPLY -p icmp --icmp-type time-exceeded -j NFQUEUE --queue-balance 6:7 --queue-bypass
            -A NFQR-REPLY -p icmp --icmp-type parameter-problem -j NFQUEUE --queue-balance 6:7 --queue-bypass
            -I OUTPUT 1 -j NFQR-REPLY
            COMMIT

            """)
        let v6 = try XCTUnwrap(try RuleGenerator.iptables(mixed, family: .ipv6))
        XCTAssertEqual(
            v6.rules.mapValues { $0.filter { !$0.contains("icmp") } }, ruleSet.rules.mapValues { $0.filter { !$0.contains("icmp") } },
            "no CIDRs: the same flow rules for both families")
        for chain in [ChainJump.preRouting, .output] {
            XCTAssertEqual(
                v6.rules[chain]?.filter { $0.contains("icmp") },
                [
                    "-p ipv6-icmp --icmpv6-type destination-unreachable -j NFQUEUE --queue-balance 4:5 --queue-bypass",
                    "-p ipv6-icmp --icmpv6-type packet-too-big -j NFQUEUE --queue-balance 4:5 --queue-bypass",
                    "-p ipv6-icmp --icmpv6-type time-exceeded -j NFQUEUE --queue-balance 4:5 --queue-bypass",
                    "-p ipv6-icmp --icmpv6-type parameter-problem -j NFQUEUE --queue-balance 4:5 --queue-bypass",
                ])
        }
        XCTAssertEqual(v6.rules[.reply]?.filter { $0.contains("icmp") }.count, 4)
    }

    func testNftablesGolden() throws {
        XCTAssertEqual(
            try RuleGenerator.nftables(mixed),
            """
            table inet nfq_redirect {
            \tchain prerouting {
            \t\ttype filter hook prerouting priority -300; policy accept;
            \t\tiif "lo" return
            \t\tmeta mark & 0xf0 == 0x10 return
            \t\tmeta mark 0x7 return
            \t\ttcp dport { 80, 443, 8000-8100 } queue num 4-5 bypass
            \t\ttcp dport 8080 queue num 4-5 bypass
            \t\ticmp type { destination-unreachable, time-exceeded, parameter-problem } queue num 4-5 bypass
            \t\ticmpv6 type { destination-unreachable, packet-too-big, time-exceeded, parameter-problem } queue num 4-5 bypass
            \t}
            \tchain output {
            \t\ttype filter hook output priority -300; policy accept;
            \t\tmeta mark & 0xf0 == 0x10 return
            \t\tmeta mark 0x7 return
            \t\tmeta skuid 995 return
            \t\tudp dport 53 queue num 4-5 bypass
            \t\tudp dport 5353 queue num 4-5 bypass
            \t\ticmp type { destination-unreachable, time-exceeded, parameter-problem } queue num 4-5 bypass
            \t\ticmpv6 type { destination-unreachable, packet-too-big, time-exceeded, parameter-problem } queue num 4-5 bypass
            \t}
            \tchain reply {
            \t\ttype filter hook output priority -150; policy accept;
            \t\ttcp sport 8080 queue num 6-7
            \t\tudp sport 5353 queue num 6-7
            \t\ticmp type { destination-unreachable, time-exceeded, parameter-problem } queue num 6-7 bypass
            \t\ticmpv6 type { destination-unreachable, packet-too-big, time-exceeded, parameter-problem } queue num 6-7 bypass
            \t}
            }

            """)
    }

    func testAddressesPickTheirFamilyAndRulesOfTheOtherFamilyAreLeftOut() throws {
        var rule = try RedirectRule(parsing: "tcp:443:8443", scope: .network)
        rule.sources = [CIDR("10.0.0.0/8")!, CIDR("fd00::/8")!]
        rule.destinations = [CIDR("192.0.2.0/24")!, CIDR("198.51.100.7")!]
        var v6Only = try RedirectRule(parsing: "udp:443:8443", scope: .network)
        v6Only.families = [.ipv6]
        let configuration = RuleSetConfiguration(rules: [rule, v6Only], firstQueue: 0)
        XCTAssertEqual(
            try RuleGenerator.iptables(configuration, family: .ipv4)?.rules[.preRouting],
            [
                "-i lo -j RETURN",
                "-p tcp -s 10.0.0.0/8 -d 192.0.2.0/24 --dport 443 -j NFQUEUE --queue-num 0",
                "-p tcp -s 10.0.0.0/8 -d 198.51.100.7/32 --dport 443 -j NFQUEUE --queue-num 0",
                "-p tcp --dport 8443 -j NFQUEUE --queue-num 0",
                "-p icmp --icmp-type destination-unreachable -j NFQUEUE --queue-num 0 --queue-bypass",
                "-p icmp --icmp-type time-exceeded -j NFQUEUE --queue-num 0 --queue-bypass",
                "-p icmp --icmp-type parameter-problem -j NFQUEUE --queue-num 0 --queue-bypass",
            ])
        // IPv6: the TCP rule names only IPv4 destinations, so only the IPv6-only UDP rule applies.
        XCTAssertEqual(
            try RuleGenerator.iptables(configuration, family: .ipv6)?.rules[.preRouting],
            [
                "-i lo -j RETURN",
                "-p udp --dport 443 -j NFQUEUE --queue-num 0",
                "-p udp --dport 8443 -j NFQUEUE --queue-num 0",
                "-p ipv6-icmp --icmpv6-type destination-unreachable -j NFQUEUE --queue-num 0 --queue-bypass",
                "-p ipv6-icmp --icmpv6-type packet-too-big -j NFQUEUE --queue-num 0 --queue-bypass",
                "-p ipv6-icmp --icmpv6-type time-exceeded -j NFQUEUE --queue-num 0 --queue-bypass",
                "-p ipv6-icmp --icmpv6-type parameter-problem -j NFQUEUE --queue-num 0 --queue-bypass",
            ])
        XCTAssertEqual(
            try RuleGenerator.iptables(configuration, family: .ipv6)?.rules[.reply],
            [
                "-p udp --sport 8443 -j NFQUEUE --queue-num 1",
                "-p ipv6-icmp --icmpv6-type destination-unreachable -j NFQUEUE --queue-num 1 --queue-bypass",
                "-p ipv6-icmp --icmpv6-type packet-too-big -j NFQUEUE --queue-num 1 --queue-bypass",
                "-p ipv6-icmp --icmpv6-type time-exceeded -j NFQUEUE --queue-num 1 --queue-bypass",
                "-p ipv6-icmp --icmpv6-type parameter-problem -j NFQUEUE --queue-num 1 --queue-bypass",
            ])
        XCTAssertNil(try RuleGenerator.iptables(configuration, family: .ipv6)?.rules[.output], "no local rule: no ICMP on OUTPUT")
        XCTAssertTrue(
            try RuleGenerator.nftables(configuration).contains(
                "icmp type { destination-unreachable, time-exceeded, parameter-problem } queue num 1 bypass\n"),
            "ICMP errors bypass, fail-open or not")
        XCTAssertTrue(
            try RuleGenerator.nftables(configuration).contains(
                "meta nfproto ipv4 ip saddr 10.0.0.0/8 ip daddr { 192.0.2.0/24, 198.51.100.7/32 } tcp dport 443 queue num 0\n"))
        XCTAssertTrue(try RuleGenerator.nftables(configuration).contains("meta nfproto ipv6 udp dport 443 queue num 0\n"))
    }

    func testNoRuleForAFamilyMeansNoRuleSet() throws {
        var rule = try RedirectRule(parsing: "tcp:80:8080", scope: .local)
        rule.families = [.ipv4]
        XCTAssertNil(try RuleGenerator.iptables(RuleSetConfiguration(rules: [rule]), family: .ipv6))
        XCTAssertNil(try RuleGenerator.iptables(RuleSetConfiguration(rules: []), family: .ipv4))
    }

    func testMultiportHoldsAtMostFifteenPorts() throws {
        let ports = (1...20).map { "\($0 * 10)" }.joined(separator: ",") + ",1000-1010"
        let rule = try RedirectRule(parsing: "tcp:\(ports):9", scope: .network)
        let rules = try XCTUnwrap(try RuleGenerator.iptables(RuleSetConfiguration(rules: [rule]), family: .ipv4)?.rules[.preRouting])
        XCTAssertEqual(
            Array(rules[1...2]),
            [
                "-p tcp -m multiport --dports 10,20,30,40,50,60,70,80,90,100,110,120,130,140,150 -j NFQUEUE --queue-num 0",
                "-p tcp -m multiport --dports 160,170,180,190,200,1000:1010 -j NFQUEUE --queue-num 0",
            ])
    }

    func testQueueNumbersMustFit() {
        let rule = try! RedirectRule(parsing: "tcp:80:8080", scope: .network)
        for (first, count) in [(UInt16(65535), UInt16(1)), (65000, 300), (0, 0)] {
            XCTAssertThrowsError(try RuleGenerator.iptables(RuleSetConfiguration(rules: [rule], firstQueue: first, queueCount: count), family: .ipv4))
        }
        XCTAssertNoThrow(try RuleGenerator.iptables(RuleSetConfiguration(rules: [rule], firstQueue: 65533, queueCount: 1), family: .ipv4))
    }

    func testKernelNATGolden() throws {
        var configuration = mixed
        configuration.kernelNAT = KernelNATMarks(mask: 0x0ff0_0000, ports: configuration.rules.map(\.toPort))
        let ruleSet = try XCTUnwrap(try RuleGenerator.iptables(configuration, family: .ipv4))
        XCTAssertEqual(
            ruleSet.restoreInput(insertingJumps: ChainJump.all),
            """
            *raw
            :NFQR-EV-PREROUTING - [0:0]
            :NFQR-EV-OUTPUT - [0:0]
            -F NFQR-EV-PREROUTING
            -F NFQR-EV-OUTPUT
            -A NFQR-EV-PREROUTING -p tcp --syn -m multiport --dports 80,443,8000:8100 -j CT --ctevents new,reply,assured,destroy
            -I PREROUTING 1 -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j NFQR-EV-PREROUTING
            -I OUTPUT 1 -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j NFQR-EV-OUTPUT
            COMMIT
            *mangle
            :NFQR-NEW-PREROUTING - [0:0]
            :NFQR-NEW-OUTPUT - [0:0]
            -F NFQR-NEW-PREROUTING
            -F NFQR-NEW-OUTPUT
            -A NFQR-NEW-PREROUTING -i lo -j RETURN
            -A NFQR-NEW-PREROUTING -m mark --mark 0x10/0xf0 -j RETURN
            -A NFQR-NEW-PREROUTING -m mark --mark 0x7 -j RETURN
            -A NFQR-NEW-PREROUTING -p tcp -m multiport --dports 80,443,8000:8100 -j NFQUEUE --queue-balance 4:5 --queue-bypass
            -A NFQR-NEW-PREROUTING -p tcp --dport 8080 -j NFQUEUE --queue-balance 4:5 --queue-bypass
            -A NFQR-NEW-OUTPUT -m mark --mark 0x10/0xf0 -j RETURN
            -A NFQR-NEW-OUTPUT -m mark --mark 0x7 -j RETURN
            -A NFQR-NEW-OUTPUT -m owner --uid-owner 995 -j RETURN
            -A NFQR-NEW-OUTPUT -p udp --dport 53 -j NFQUEUE --queue-balance 4:5 --queue-bypass
            -A NFQR-NEW-OUTPUT -p udp --dport 5353 -j NFQUEUE --queue-balance 4:5 --queue-bypass
            -I PREROUTING 1 -m connmark --mark 0x0/0xff00000 -m conntrack --ctstate NEW -j NFQR-NEW-PREROUTING
            -I OUTPUT 1 -m connmark --mark 0x0/0xff00000 -m conntrack --ctstate NEW -j NFQR-NEW-OUTPUT
            COMMIT
            *nat
            :NFQR-NAT-PREROUTING - [0:0]
            :NFQR-NAT-OUTPUT - [0:0]
            -F NFQR-NAT-PREROUTING
            -F NFQR-NAT-OUTPUT
            -A NFQR-NAT-PREROUTING -m mark --mark 0x0/0xff00000 -j RETURN
            -A NFQR-NAT-PREROUTING -j CONNMARK --save-mark --nfmask 0xff00000 --ctmask 0xff00000
            -A NFQR-NAT-PREROUTING -p tcp -m mark --mark 0x200000/0xff00000 -j REDIRECT --to-ports 8080
            -A NFQR-NAT-OUTPUT -m mark --mark 0x0/0xff00000 -j RETURN
            -A NFQR-NAT-OUTPUT -j CONNMARK --save-mark --nfmask 0xff00000 --ctmask 0xff00000
            -A NFQR-NAT-OUTPUT -p udp -m mark --mark 0x100000/0xff00000 -j REDIRECT --to-ports 5353
            -I PREROUTING 1 -j NFQR-NAT-PREROUTING
            -I OUTPUT 1 -j NFQR-NAT-OUTPUT
            COMMIT

            """)
        XCTAssertThrowsError(try RuleGenerator.nftables(configuration), "the nft form is the userspace mode's")
    }

    func testRecordingInstaller() throws {
        let installer = RecordingRuleInstaller()
        let configuration = RuleSetConfiguration(rules: [try RedirectRule(parsing: "tcp:80:8080", scope: .network)])
        try installer.install(configuration)
        XCTAssertEqual(installer.installed, configuration)
        try installer.remove()
        XCTAssertNil(installer.installed)
        installer.failWith(.programNotFound(name: "iptables-restore", searchPath: "/usr/sbin"))
        XCTAssertThrowsError(try installer.install(configuration))
        XCTAssertEqual(installer.actions, [.install(configuration), .remove])
    }

    func testMissingProgramsGiveAClearError() {
        XCTAssertThrowsError(try ProgramRunner.locate("nfqr-no-such-program")) { error in
            XCTAssertTrue("\(error)".contains("'nfqr-no-such-program' was not found in"), "\(error)")
        }
    }
}
