/// A TCP or UDP packet over IPv4 or IPv6, parsed from the bytes NFQUEUE hands over (starting
/// at the IP header), with its lengths checked once so rewrites need no further checks.
///
/// `parse` is the whole attack surface for bytes off the wire: it reads only inside the
/// lengths it has checked, allocates nothing, and reports every refusal as a `PacketError`.
/// The buffer may run past the IP total length (the kernel trims link-layer padding before
/// the hooks, so this is rare): those trailing bytes are no part of the packet, are covered
/// by no checksum, and are never read or written. Hand the whole buffer back in the verdict,
/// so the kernel keeps the packet's length.
public struct ParsedPacket: Hashable, Sendable {
    public let family: AddressFamily
    public let proto: TransportProtocol
    public internal(set) var source: Endpoint
    public internal(set) var destination: Endpoint
    /// The TCP flag byte; empty for UDP.
    public let tcpFlags: TCPFlags
    /// The sequence numbers a TCP segment occupies; zero for UDP.
    public let tcpSequence: TCPSequenceSpan
    /// The IPv4 header with options, or the IPv6 header with its extension headers.
    public let l3HeaderLength: Int
    /// TCP segment or UDP datagram length: header and data.
    public let l4Length: Int

    /// Where the TCP or UDP header starts in the buffer.
    public var l4Offset: Int { l3HeaderLength }

    /// The IP packet's length: IPv4 total length, or 40 + IPv6 payload length.
    public var totalLength: Int { l3HeaderLength &+ l4Length }

    public var tuple: FlowTuple { FlowTuple(proto: proto, source: source, destination: destination) }

    public static func parse(_ bytes: UnsafeMutableRawBufferPointer) throws(PacketError) -> ParsedPacket {
        try parse(UnsafeRawBufferPointer(bytes))
    }

    public static func parse(_ bytes: UnsafeRawBufferPointer) throws(PacketError) -> ParsedPacket {
        guard !bytes.isEmpty else { throw .truncated }
        switch bytes[0] >> 4 {
        case 4: return try parseIPv4(bytes)
        case 6: return try parseIPv6(bytes)
        default: throw .badVersion
        }
    }

    private static func parseIPv4(_ bytes: UnsafeRawBufferPointer) throws(PacketError) -> ParsedPacket {
        let ip = try IPv4Header(checking: bytes)
        // Checked before the protocol: a fragment is refused whatever it carries, as IPv6
        // fragments are, whose upper protocol is unknown past the first.
        guard !ip.isFragment else { throw .fragment }
        return try parseTransport(
            protocolNumber: ip.protocolNumber, segment: ip.payload, family: .ipv4,
            source: ip.source, destination: ip.destination, l3HeaderLength: ip.headerLength)
    }

    private static func parseIPv6(_ bytes: UnsafeRawBufferPointer) throws(PacketError) -> ParsedPacket {
        let ip = try IPv6Header(checking: bytes)
        let source = ip.source
        let destination = ip.destination
        guard !source.isIPv4, !destination.isIPv4 else { throw .mappedAddressInIPv6 }
        let upper = try IPv6ExtensionHeaders.upperLayer(of: ip)
        return try parseTransport(
            protocolNumber: upper.protocolNumber,
            segment: UnsafeRawBufferPointer(rebasing: ip.packet[upper.offset...]), family: .ipv6,
            source: source, destination: destination, l3HeaderLength: upper.offset)
    }

    private static func parseTransport(
        protocolNumber: UInt8, segment: UnsafeRawBufferPointer, family: AddressFamily,
        source: IPAddress, destination: IPAddress, l3HeaderLength: Int
    ) throws(PacketError) -> ParsedPacket {
        switch TransportProtocol(rawValue: protocolNumber) {
        case .tcp:
            let tcp = try TCPHeader(checking: segment)
            return ParsedPacket(
                family: family, proto: .tcp,
                source: Endpoint(source, tcp.sourcePort), destination: Endpoint(destination, tcp.destinationPort),
                tcpFlags: tcp.flags, tcpSequence: tcp.sequenceSpan, l3HeaderLength: l3HeaderLength,
                l4Length: segment.count)
        case .udp:
            let udp = try UDPHeader(checking: segment)
            return ParsedPacket(
                family: family, proto: .udp,
                source: Endpoint(source, udp.sourcePort), destination: Endpoint(destination, udp.destinationPort),
                tcpFlags: [], tcpSequence: TCPSequenceSpan(start: 0, end: 0), l3HeaderLength: l3HeaderLength,
                l4Length: segment.count)
        case nil:
            throw .unsupportedProtocol
        }
    }
}
