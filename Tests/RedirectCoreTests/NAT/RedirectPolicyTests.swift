import RedirectCore
import XCTest

/// The per-new-flow decision: which rule matches, and when a flow is tracked without a redirect.
final class RedirectPolicyTests: XCTestCase {
    private func rule(_ text: String, _ scope: RedirectRule.Scope = .network) -> RedirectRule {
        try! RedirectRule(parsing: text, scope: scope)
    }

    private func tuple(_ proto: TransportProtocol, from source: String, to destination: String, port: UInt16) -> FlowTuple {
        FlowTuple(proto: proto, source: Endpoint(IPAddress(source)!, 40000), destination: Endpoint(IPAddress(destination)!, port))
    }

    func testDecisionsFollowProtocolPortsScopeAndFamily() {
        var v4only = rule("tcp:7000-7100:3128")
        v4only.families = [.ipv4]
        let policy = RedirectPolicy(rules: [rule("tcp:80,443:8080"), rule("udp:53:5353"), rule("tcp:9000:8090", .local), v4only])
        let cases: [(FlowTuple, PacketMetadata.Hook, RedirectPolicy.Decision, String)] = [
            (tuple(.tcp, from: "192.0.2.2", to: "203.0.113.10", port: 80), .preRouting, .redirect(to: 8080), "tcp 80 from the network"),
            (tuple(.tcp, from: "2001:db8::2", to: "2001:db8:3::10", port: 443), .preRouting, .redirect(to: 8080), "tcp 443 over IPv6"),
            (tuple(.udp, from: "192.0.2.2", to: "203.0.113.10", port: 53), .preRouting, .redirect(to: 5353), "udp 53"),
            (tuple(.udp, from: "192.0.2.2", to: "203.0.113.10", port: 80), .preRouting, .ignore, "udp 80: protocol differs"),
            (tuple(.tcp, from: "192.0.2.2", to: "203.0.113.10", port: 81), .preRouting, .ignore, "a port no rule names"),
            (tuple(.tcp, from: "198.51.100.1", to: "203.0.113.10", port: 9000), .localOut, .redirect(to: 8090), "local rule on OUTPUT"),
            (tuple(.tcp, from: "192.0.2.2", to: "203.0.113.10", port: 9000), .preRouting, .ignore, "local rule does not apply to the network"),
            (tuple(.tcp, from: "198.51.100.1", to: "203.0.113.10", port: 80), .localOut, .ignore, "network rule does not apply to OUTPUT"),
            (tuple(.tcp, from: "192.0.2.2", to: "203.0.113.10", port: 7050), .preRouting, .redirect(to: 3128), "a port inside a range"),
            (tuple(.tcp, from: "2001:db8::2", to: "2001:db8:3::10", port: 7050), .preRouting, .ignore, "an IPv4-only rule and an IPv6 flow"),
            (tuple(.tcp, from: "192.0.2.2", to: "192.0.2.1", port: 8080), .preRouting, .trackOnly, "dialling the proxy port directly"),
            (tuple(.udp, from: "192.0.2.2", to: "192.0.2.1", port: 5353), .preRouting, .trackOnly, "dialling the UDP relay directly"),
            (tuple(.udp, from: "192.0.2.2", to: "192.0.2.1", port: 8080), .preRouting, .ignore, "a proxy port of the other protocol"),
        ]
        for (tuple, hook, expected, what) in cases {
            XCTAssertEqual(policy.decide(tuple, hook: hook), expected, what)
        }
    }

    func testSourceAndDestinationPrefixesNarrowARule() {
        var narrow = rule("tcp:80:8080")
        narrow.sources = [CIDR("192.0.2.0/25")!, CIDR("2001:db8:1::/48")!]
        narrow.destinations = [CIDR("203.0.113.0/24")!]
        let policy = RedirectPolicy(rules: [narrow, rule("tcp:80:8081")])
        XCTAssertEqual(policy.decide(tuple(.tcp, from: "192.0.2.2", to: "203.0.113.10", port: 80), hook: .preRouting), .redirect(to: 8080))
        XCTAssertEqual(
            policy.decide(tuple(.tcp, from: "192.0.2.200", to: "203.0.113.10", port: 80), hook: .preRouting), .redirect(to: 8081),
            "a source outside the prefix falls through to the next rule")
        XCTAssertEqual(
            policy.decide(tuple(.tcp, from: "192.0.2.2", to: "198.51.100.7", port: 80), hook: .preRouting), .redirect(to: 8081),
            "a destination outside the prefix falls through")
        XCTAssertEqual(
            policy.decide(tuple(.tcp, from: "2001:db8:1::9", to: "2001:db8:3::10", port: 80), hook: .preRouting), .redirect(to: 8081),
            "an IPv6 flow never matches an IPv4-only destination list")
    }

    func testTheFirstMatchingRuleWins() {
        let policy = RedirectPolicy(rules: [rule("tcp:80:8080"), rule("tcp:1-1000:9999")])
        XCTAssertEqual(policy.decide(tuple(.tcp, from: "192.0.2.2", to: "203.0.113.10", port: 80), hook: .preRouting), .redirect(to: 8080))
        XCTAssertEqual(policy.decide(tuple(.tcp, from: "192.0.2.2", to: "203.0.113.10", port: 81), hook: .preRouting), .redirect(to: 9999))
    }
}
