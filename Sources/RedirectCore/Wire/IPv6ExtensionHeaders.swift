/// Walks an IPv6 extension header chain (RFC 8200 4) to the upper-layer header.
///
/// Every extension header is at least 8 bytes long, so offsets only grow and a chain cannot
/// loop; the caps bound the work a hostile chain of many small headers can cause.
enum IPv6ExtensionHeaders {
    /// More extension headers than any real packet carries (RFC 8200 recommends an order
    /// using each at most once, Destination Options twice).
    static let maximumCount = 8
    /// Bytes of extension headers walked at most: two Hop-by-Hop-sized headers' worth.
    static let maximumLength = 4096

    static let hopByHop: UInt8 = 0
    static let routing: UInt8 = 43
    static let fragment: UInt8 = 44
    static let authentication: UInt8 = 51
    static let destinationOptions: UInt8 = 60

    /// The upper-layer protocol number and where its header starts in `header.packet`.
    /// Protocols that are not extension headers (TCP, UDP, ICMPv6, ESP, No Next Header,
    /// anything unknown) end the walk; the caller decides what it accepts.
    static func upperLayer(of header: IPv6Header) throws(PacketError) -> (protocolNumber: UInt8, offset: Int) {
        let packet = header.packet
        var next = header.nextHeader
        var offset = IPv6Header.length
        var count = 0
        while true {
            switch next {
            case fragment:
                throw .fragment
            case hopByHop, routing, destinationOptions, authentication:
                guard next != hopByHop || count == 0 else { throw .ipv6HopByHopMisplaced }
                count &+= 1
                guard count <= maximumCount else { throw .ipv6ExtensionChainTooLong }
                guard packet.count &- offset >= 8 else { throw .ipv6ExtensionTruncated }
                let lengthField = Int(packet[offset &+ 1])
                // AH counts 4-byte units minus 2 (RFC 4302 2.2); the others 8-byte units minus 1.
                let length = next == authentication ? (lengthField &+ 2) &* 4 : (lengthField &+ 1) &* 8
                guard packet.count &- offset >= length else { throw .ipv6ExtensionTruncated }
                guard offset &+ length &- IPv6Header.length <= maximumLength else {
                    throw .ipv6ExtensionChainTooLong
                }
                // With segments left, the destination field names an intermediate hop, while
                // the transport checksum covers the final destination (RFC 8200 8.1).
                if next == routing && packet[offset &+ 3] != 0 { throw .ipv6RoutingInProgress }
                next = packet[offset]
                offset &+= length
            default:
                return (next, offset)
            }
        }
    }
}
