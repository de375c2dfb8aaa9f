import RedirectCore

/// A deliberately naive Internet checksum, byte by byte, with pseudo-headers laid out as the
/// RFCs draw them: the independent oracle the fast code is checked against.
enum ReferenceChecksum {
    static func onesComplementSum(_ bytes: [UInt8]) -> UInt16 {
        var total = 0
        var index = 0
        while index < bytes.count {
            let high = Int(bytes[index])
            let low = index + 1 < bytes.count ? Int(bytes[index + 1]) : 0
            total += high << 8 | low
            index += 2
        }
        while total > 0xffff { total = (total & 0xffff) + (total >> 16) }
        return UInt16(total)
    }

    static func checksum(_ bytes: [UInt8]) -> UInt16 { ~onesComplementSum(bytes) }

    static func addressBytes(_ address: IPAddress, family: AddressFamily) -> [UInt8] {
        let all =
            (0..<8).map { UInt8(truncatingIfNeeded: address.high >> (56 - 8 * $0)) }
            + (0..<8).map { UInt8(truncatingIfNeeded: address.low >> (56 - 8 * $0)) }
        return family == .ipv4 ? Array(all[12...]) : all
    }

    /// RFC 793 3.1 / RFC 768 for IPv4, RFC 8200 8.1 for IPv6.
    static func pseudoHeader(
        family: AddressFamily, source: IPAddress, destination: IPAddress, proto: UInt8, length: Int
    ) -> [UInt8] {
        let addresses = addressBytes(source, family: family) + addressBytes(destination, family: family)
        switch family {
        case .ipv4:
            return addresses + [0, proto, UInt8(length >> 8), UInt8(length & 0xff)]
        case .ipv6:
            return addresses
                + [UInt8(length >> 24 & 0xff), UInt8(length >> 16 & 0xff)]
                + [UInt8(length >> 8 & 0xff), UInt8(length & 0xff)]
                + [0, 0, 0, proto]
        }
    }

    /// The IPv4 header checksum the header in `packet` should carry.
    static func ipv4HeaderChecksum(_ packet: [UInt8]) -> UInt16 {
        var header = Array(packet[0..<Int(packet[0] & 0x0f) * 4])
        header[10] = 0
        header[11] = 0
        return checksum(header)
    }

    static func readAddress(_ packet: [UInt8], at offset: Int, family: AddressFamily) -> IPAddress {
        if family == .ipv4 {
            let v = packet[offset..<offset + 4].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            return IPAddress(ipv4: v)
        }
        let high = packet[offset..<offset + 8].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        let low = packet[offset + 8..<offset + 16].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        return IPAddress(high: high, low: low)
    }

    /// The TCP/UDP checksum the segment at `l4Offset` should carry (UDP's 0 -> 0xFFFF applied),
    /// with the addresses read from the IP header's own fields.
    static func transportChecksum(
        _ packet: [UInt8], family: AddressFamily, proto: TransportProtocol, l4Offset: Int, l4Length: Int
    ) -> UInt16 {
        let (sourceOffset, destinationOffset) = family == .ipv4 ? (12, 16) : (8, 24)
        var segment = Array(packet[l4Offset..<l4Offset + l4Length])
        let field = proto == .tcp ? 16 : 6
        segment[field] = 0
        segment[field + 1] = 0
        let pseudo = pseudoHeader(
            family: family,
            source: readAddress(packet, at: sourceOffset, family: family),
            destination: readAddress(packet, at: destinationOffset, family: family),
            proto: proto.rawValue, length: l4Length)
        let value = checksum(pseudo + segment)
        return proto == .udp && value == 0 ? 0xffff : value
    }

    static func storedTransportChecksum(_ packet: [UInt8], proto: TransportProtocol, l4Offset: Int) -> UInt16 {
        let field = l4Offset + (proto == .tcp ? 16 : 6)
        return UInt16(packet[field]) << 8 | UInt16(packet[field + 1])
    }
}
