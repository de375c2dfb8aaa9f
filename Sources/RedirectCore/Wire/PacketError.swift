/// Why a queued packet was not parsed or rewritten: one case per metrics label.
///
/// Most reasons mean "drop": the packet is malformed, or is one the daemon could only rewrite
/// by guessing. A few mean "pass untouched" (`isPassUntouched`): the packet is well formed
/// but none of the daemon's business, and the kernel should handle it as if it were never
/// queued.
public enum PacketError: Error, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    /// The buffer ends before the IP header does, or before the IP total length says it does
    /// (a capture shorter than the packet must never be rewritten and sent back).
    case truncated
    /// The first nibble is neither 4 nor 6.
    case badVersion
    /// IPv4 IHL below 5.
    case badIHL
    /// The IPv4 total length is shorter than the header it describes.
    case lengthMismatch
    /// IPv4 total length 0 or IPv6 payload length 0 with bytes after the header: a jumbogram
    /// or a BIG TCP super-packet, whose real length the header does not give.
    case jumbogram
    /// Any IPv4 fragment (MF set or offset non-zero) or any IPv6 Fragment header: the ports
    /// are missing or cannot be trusted, and a mapping is never guessed.
    case fragment
    /// Neither TCP nor UDP nor an ICMP error (ESP, ICMP echo, No Next Header, an unknown
    /// extension header, ...).
    case unsupportedProtocol
    /// More IPv6 extension headers, or more bytes of them, than the parser walks.
    case ipv6ExtensionChainTooLong
    /// An IPv6 extension header runs past the payload length.
    case ipv6ExtensionTruncated
    /// A Hop-by-Hop Options header anywhere but right after the IPv6 header (RFC 8200 4.1).
    case ipv6HopByHopMisplaced
    /// A Routing header with segments left: the destination field is an intermediate hop, not
    /// the address the transport checksum covers, so the packet is the router's business.
    case ipv6RoutingInProgress
    /// An IPv6 source or destination in ::ffff:0:0/96; the flow table keeps IPv4 there.
    case mappedAddressInIPv6
    /// The IP payload is shorter than a TCP or UDP header.
    case transportTruncated
    /// TCP data offset below 5, or beyond the segment.
    case badTCPDataOffset
    /// The UDP length field disagrees with the IP payload length.
    case badUDPLength
    /// A rewrite asked for an address of the other family than the packet's.
    case familyMismatch
    /// An ICMP or ICMPv6 error shorter than its header, or quoting less than the quoted IP
    /// header and 8 bytes of its transport header (the ports): too short to tell which flow it
    /// concerns, and none of RFC 792, RFC 1812 or RFC 4443 allows it.
    case icmpTruncated
    /// An ICMP error whose quoted header is no packet of the outer family (wrong version, IHL
    /// below 5, a length shorter than its header, IPv4-mapped addresses in IPv6): forged or broken.
    case icmpBadQuote
    /// An ICMP error quoting a packet the daemon cannot have tracked (neither TCP nor UDP, a
    /// non-first fragment, a packet on its routing header's way): not its business.
    case icmpQuoteUntracked

    /// A stable snake_case name for metrics labels and logs.
    public var label: String {
        switch self {
        case .truncated: "truncated"
        case .badVersion: "bad_version"
        case .badIHL: "bad_ihl"
        case .lengthMismatch: "length_mismatch"
        case .jumbogram: "jumbogram"
        case .fragment: "fragment"
        case .unsupportedProtocol: "unsupported_protocol"
        case .ipv6ExtensionChainTooLong: "ipv6_extension_chain_too_long"
        case .ipv6ExtensionTruncated: "ipv6_extension_truncated"
        case .ipv6HopByHopMisplaced: "ipv6_hop_by_hop_misplaced"
        case .ipv6RoutingInProgress: "ipv6_routing_in_progress"
        case .mappedAddressInIPv6: "mapped_address_in_ipv6"
        case .transportTruncated: "transport_truncated"
        case .badTCPDataOffset: "bad_tcp_data_offset"
        case .badUDPLength: "bad_udp_length"
        case .familyMismatch: "family_mismatch"
        case .icmpTruncated: "icmp_truncated"
        case .icmpBadQuote: "icmp_bad_quote"
        case .icmpQuoteUntracked: "icmp_quote_untracked"
        }
    }

    /// True when the packet should be accepted unmodified rather than dropped: it is well
    /// formed, and not a packet the daemon tracks or rewrites.
    public var isPassUntouched: Bool {
        switch self {
        case .unsupportedProtocol, .ipv6RoutingInProgress, .icmpQuoteUntracked: true
        default: false
        }
    }

    public var description: String { label }
}
