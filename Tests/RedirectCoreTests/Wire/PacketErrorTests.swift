import RedirectCore
import XCTest

final class PacketErrorTests: XCTestCase {
    func testLabelsAreUniqueSnakeCase() {
        let labels = PacketError.allCases.map(\.label)
        XCTAssertEqual(Set(labels).count, labels.count)
        for label in labels {
            XCTAssertFalse(label.isEmpty)
            XCTAssertTrue(label.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "_" }, label)
            XCTAssertFalse(label.hasPrefix("_") || label.hasSuffix("_") || label.contains("__"), label)
        }
    }

    /// Metrics dashboards key on these; changing one is a breaking change.
    func testLabelsAreStable() {
        XCTAssertEqual(
            PacketError.allCases.map(\.label),
            [
                "truncated", "bad_version", "bad_ihl", "length_mismatch", "jumbogram", "fragment",
                "unsupported_protocol", "ipv6_extension_chain_too_long", "ipv6_extension_truncated",
                "ipv6_hop_by_hop_misplaced", "ipv6_routing_in_progress", "mapped_address_in_ipv6",
                "transport_truncated", "bad_tcp_data_offset", "bad_udp_length", "family_mismatch",
                "icmp_truncated", "icmp_bad_quote", "icmp_quote_untracked",
            ])
        XCTAssertEqual(PacketError.badTCPDataOffset.description, "bad_tcp_data_offset")
    }

    func testOnlyForeignButWellFormedPacketsPassUntouched() {
        XCTAssertEqual(
            PacketError.allCases.filter(\.isPassUntouched), [.unsupportedProtocol, .ipv6RoutingInProgress, .icmpQuoteUntracked])
    }
}
