/// An ICMP (RFC 792) or ICMPv6 (RFC 4443) error message quoting a TCP or UDP packet: the
/// traffic the kernel's conntrack calls RELATED to a flow, parsed from the bytes NFQUEUE hands
/// over with every length checked once, so the translation needs no further checks.
///
/// ```
/// outer IP header | ICMP header (8 bytes) | quoted IP header | >= 8 bytes of quoted TCP/UDP
/// ```
///
/// Errors: IPv4 destination unreachable (fragmentation needed among its codes), time exceeded,
/// parameter problem; ICMPv6 destination unreachable, packet too big, time exceeded, parameter
/// problem. Everything else ICMP (echo, neighbour discovery, redirects) is `unsupportedProtocol`,
/// passed untouched.
///
/// The quote is what the error's sender kept of the packet: RFC 792 asks for the IP header and
/// 8 bytes of transport (the ports, and for UDP its checksum; an 8-byte TCP quote stops short of
/// the TCP checksum), RFC 1812 and RFC 4443 for as much as fits. The quoted IP header still
/// gives the original packet's length, so the quote is usually shorter than that; only the
/// bytes present are read or written.
public struct ICMPErrorPacket: Hashable, Sendable {
    public static let icmpProtocol: UInt8 = 1
    public static let icmpv6Protocol: UInt8 = 58
    /// Type, code, checksum and the 4 bytes of type-specific data (unused, MTU, pointer).
    public static let headerLength = 8
    /// What a quote must keep of the transport header: both ports.
    public static let minimumQuotedTransport = 8

    public let family: AddressFamily
    public let type: UInt8
    public let code: UInt8
    public internal(set) var outerSource: IPAddress
    public internal(set) var outerDestination: IPAddress
    /// The quoted packet's protocol and endpoints, as quoted (its source -> its destination).
    public let proto: TransportProtocol
    public internal(set) var quotedSource: Endpoint
    public internal(set) var quotedDestination: Endpoint
    /// Where the ICMP header starts: the outer IP header's length, options or extension headers included.
    public let icmpOffset: Int
    /// The ICMP message (header and quote) as the outer length gives it.
    public let icmpLength: Int
    /// Where the quoted transport header starts in the buffer.
    public let quotedTransportOffset: Int
    /// Bytes of the quoted transport header (and data) present: at least 8, at most what the
    /// quoted IP header says the packet had.
    public let quotedTransportLength: Int

    /// Where the quoted IP header starts in the buffer.
    public var quoteOffset: Int { icmpOffset &+ Self.headerLength }

    /// The outer packet's length: IPv4 total length, or 40 + IPv6 payload length.
    public var totalLength: Int { icmpOffset &+ icmpLength }

    public var quotedTuple: FlowTuple { FlowTuple(proto: proto, source: quotedSource, destination: quotedDestination) }

    /// Where the quoted TCP or UDP checksum is, or nil when the quote stops before it (a TCP
    /// quote of fewer than 18 bytes): what is not there is not touched.
    public var quotedTransportChecksumOffset: Int? {
        let field = proto == .tcp ? TCPHeader.checksumOffset : UDPHeader.checksumOffset
        return quotedTransportLength >= field &+ 2 ? quotedTransportOffset &+ field : nil
    }

    /// The ICMP types that report an error about a packet, by family.
    public static func isError(type: UInt8, family: AddressFamily) -> Bool {
        switch family {
        case .ipv4: type == 3 || type == 11 || type == 12  // unreachable, time exceeded, parameter problem
        case .ipv6: type >= 1 && type <= 4  // unreachable, packet too big, time exceeded, parameter problem
        }
    }

    public static func parse(_ bytes: UnsafeMutableRawBufferPointer) throws(PacketError) -> ICMPErrorPacket {
        try parse(UnsafeRawBufferPointer(bytes))
    }

    /// Refusals: the outer packet's own (as `ParsedPacket.parse` gives them); `unsupportedProtocol`
    /// for anything but an ICMP error; `icmpTruncated` when the message or the quote is too short
    /// to hold what it must; `icmpBadQuote` when the quoted header is not a packet of the outer
    /// family; `icmpQuoteUntracked` for a quote the daemon cannot have sent or received (another
    /// protocol, a non-first fragment). The last two of these pass untouched.
    public static func parse(_ bytes: UnsafeRawBufferPointer) throws(PacketError) -> ICMPErrorPacket {
        guard !bytes.isEmpty else { throw .truncated }
        switch bytes[0] >> 4 {
        case 4:
            let ip = try IPv4Header(checking: bytes)
            guard !ip.isFragment else { throw .fragment }
            guard ip.protocolNumber == icmpProtocol else { throw .unsupportedProtocol }
            return try parseMessage(
                ip.payload, family: .ipv4, outerSource: ip.source, outerDestination: ip.destination,
                icmpOffset: ip.headerLength)
        case 6:
            let ip = try IPv6Header(checking: bytes)
            let source = ip.source
            let destination = ip.destination
            guard !source.isIPv4, !destination.isIPv4 else { throw .mappedAddressInIPv6 }
            let upper = try IPv6ExtensionHeaders.upperLayer(of: ip)
            guard upper.protocolNumber == icmpv6Protocol else { throw .unsupportedProtocol }
            return try parseMessage(
                UnsafeRawBufferPointer(rebasing: ip.packet[upper.offset...]), family: .ipv6,
                outerSource: source, outerDestination: destination, icmpOffset: upper.offset)
        default:
            throw .badVersion
        }
    }

    private static func parseMessage(
        _ message: UnsafeRawBufferPointer, family: AddressFamily, outerSource: IPAddress,
        outerDestination: IPAddress, icmpOffset: Int
    ) throws(PacketError) -> ICMPErrorPacket {
        guard message.count >= headerLength else { throw .icmpTruncated }
        let type = message[0]
        guard isError(type: type, family: family) else { throw .unsupportedProtocol }
        let quote = UnsafeRawBufferPointer(rebasing: message[headerLength...])
        let inner = try family == .ipv4 ? quotedIPv4(quote) : quotedIPv6(quote)
        guard let proto = TransportProtocol(rawValue: inner.protocolNumber) else { throw .icmpQuoteUntracked }
        let transportLength = inner.end &- inner.transportOffset
        guard transportLength >= minimumQuotedTransport else { throw .icmpTruncated }
        let transport = inner.transportOffset
        return ICMPErrorPacket(
            family: family, type: type, code: message[1], outerSource: outerSource,
            outerDestination: outerDestination, proto: proto,
            quotedSource: Endpoint(inner.source, quote.loadBigEndianUInt16(at: transport &+ TCPHeader.sourcePortOffset)),
            quotedDestination: Endpoint(
                inner.destination, quote.loadBigEndianUInt16(at: transport &+ TCPHeader.destinationPortOffset)),
            icmpOffset: icmpOffset, icmpLength: message.count,
            quotedTransportOffset: icmpOffset &+ headerLength &+ transport, quotedTransportLength: transportLength)
    }

    /// The quoted packet's header, offsets relative to the quote. `end` is where the quoted
    /// bytes of the packet stop: the quote's end, or the quoted packet's own end if sooner.
    private struct QuotedHeader {
        var protocolNumber: UInt8
        var source: IPAddress
        var destination: IPAddress
        var transportOffset: Int
        var end: Int
    }

    private static func quotedIPv4(_ quote: UnsafeRawBufferPointer) throws(PacketError) -> QuotedHeader {
        guard quote.count >= IPv4Header.minimumLength else { throw .icmpTruncated }
        guard quote[0] >> 4 == 4 else { throw .icmpBadQuote }
        let headerLength = Int(quote[0] & 0x0f) &* 4
        guard headerLength >= IPv4Header.minimumLength else { throw .icmpBadQuote }
        let totalLength = Int(quote.loadBigEndianUInt16(at: IPv4Header.totalLengthOffset))
        guard totalLength >= headerLength else { throw .icmpBadQuote }
        guard quote.count >= headerLength else { throw .icmpTruncated }
        // A non-first fragment has no ports; a first one (offset 0, MF set) has them, as the
        // kernel's conntrack reads them.
        guard quote.loadBigEndianUInt16(at: IPv4Header.fragmentOffset) & 0x1fff == 0 else {
            throw .icmpQuoteUntracked
        }
        return QuotedHeader(
            protocolNumber: quote[IPv4Header.protocolOffset],
            source: IPAddress(reading: quote, at: IPv4Header.sourceOffset, family: .ipv4),
            destination: IPAddress(reading: quote, at: IPv4Header.destinationOffset, family: .ipv4),
            transportOffset: headerLength, end: min(quote.count, totalLength))
    }

    private static func quotedIPv6(_ quote: UnsafeRawBufferPointer) throws(PacketError) -> QuotedHeader {
        guard quote.count >= IPv6Header.length else { throw .icmpTruncated }
        guard quote[0] >> 4 == 6 else { throw .icmpBadQuote }
        let payloadLength = Int(quote.loadBigEndianUInt16(at: IPv6Header.payloadLengthOffset))
        // A jumbogram's real length is elsewhere; none of the daemon's flows sends one.
        guard payloadLength != 0 else { throw .icmpBadQuote }
        let end = min(quote.count, IPv6Header.length &+ payloadLength)
        let header = IPv6Header(quoted: UnsafeRawBufferPointer(rebasing: quote[0..<end]))
        let source = header.source
        let destination = header.destination
        guard !source.isIPv4, !destination.isIPv4 else { throw .icmpBadQuote }
        let upper: (protocolNumber: UInt8, offset: Int)
        do {
            upper = try IPv6ExtensionHeaders.upperLayer(of: header)
        } catch {
            switch error {
            case .ipv6ExtensionTruncated: throw .icmpTruncated
            // Fragments (the walker does not tell first from later ones) and packets still on
            // their routing header's way are no packets of the daemon's flows.
            case .fragment, .ipv6RoutingInProgress: throw .icmpQuoteUntracked
            default: throw .icmpBadQuote
            }
        }
        return QuotedHeader(
            protocolNumber: upper.protocolNumber, source: source, destination: destination,
            transportOffset: upper.offset, end: end)
    }
}
