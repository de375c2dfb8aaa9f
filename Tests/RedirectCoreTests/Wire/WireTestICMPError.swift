import RedirectCore

/// Builds an ICMP or ICMPv6 error quoting a `WireTestPacket`, byte by byte with the reference
/// checksums, independently of the code under test: the quoted packet is built whole (its
/// checksums over all of it, as its sender computed them) and then cut to `quoteLength`.
struct WireTestICMPError {
    var outerSource: IPAddress
    var outerDestination: IPAddress
    var type: UInt8
    var code: UInt8 = 0
    /// The 4 type-specific bytes: unused, the next-hop MTU (IPv4 frag needed) or the MTU (ICMPv6 PTB).
    var rest: [UInt8] = [0, 0, 0x05, 0x00]
    var quoted: WireTestPacket
    /// Bytes of the quoted packet kept; nil for all of it.
    var quoteLength: Int?
    /// Replaces the quoted packet's bytes (after cutting) for malformed quotes.
    var quoteOverride: [UInt8]?

    var family: AddressFamily { outerSource.family }

    var quote: [UInt8] {
        if let quoteOverride { return quoteOverride }
        let whole = quoted.bytes
        return quoteLength.map { Array(whole.prefix($0)) } ?? whole
    }

    var bytes: [UInt8] {
        var message = [type, code, 0, 0] + rest + quote
        let checksum: UInt16
        switch family {
        case .ipv4:
            checksum = ReferenceChecksum.checksum(message)
        case .ipv6:
            checksum = ReferenceChecksum.checksum(
                ReferenceChecksum.pseudoHeader(
                    family: .ipv6, source: outerSource, destination: outerDestination, proto: 58, length: message.count)
                    + message)
        }
        message[2] = UInt8(checksum >> 8)
        message[3] = UInt8(checksum & 0xff)
        switch family {
        case .ipv4:
            let total = 20 + message.count
            var header: [UInt8] = [0x45, 0xc0, UInt8(total >> 8), UInt8(total & 0xff), 0x12, 0x34, 0, 0, 64, 1, 0, 0]
            header += ReferenceChecksum.addressBytes(outerSource, family: .ipv4)
            header += ReferenceChecksum.addressBytes(outerDestination, family: .ipv4)
            let headerChecksum = ReferenceChecksum.ipv4HeaderChecksum(header)
            header[10] = UInt8(headerChecksum >> 8)
            header[11] = UInt8(headerChecksum & 0xff)
            return header + message
        case .ipv6:
            var header: [UInt8] = [0x60, 0, 0, 0, UInt8(message.count >> 8), UInt8(message.count & 0xff), 58, 64]
            header += ReferenceChecksum.addressBytes(outerSource, family: .ipv6)
            header += ReferenceChecksum.addressBytes(outerDestination, family: .ipv6)
            return header + message
        }
    }

    /// The same error about the quoted packet with other endpoints, built from scratch: what a
    /// correct translation must produce.
    func with(
        outerSource: IPAddress? = nil, outerDestination: IPAddress? = nil,
        quotedSource: Endpoint? = nil, quotedDestination: Endpoint? = nil
    ) -> WireTestICMPError {
        var changed = self
        changed.outerSource = outerSource ?? self.outerSource
        changed.outerDestination = outerDestination ?? self.outerDestination
        changed.quoted.source = quotedSource ?? quoted.source
        changed.quoted.destination = quotedDestination ?? quoted.destination
        return changed
    }

    /// The error types each family's tests go through: (type, code, rest).
    static func errorKinds(_ family: AddressFamily) -> [(type: UInt8, code: UInt8, name: String)] {
        switch family {
        case .ipv4:
            [
                (3, 4, "fragmentation needed"), (3, 3, "port unreachable"), (3, 1, "host unreachable"),
                (11, 0, "time exceeded"), (12, 0, "parameter problem"),
            ]
        case .ipv6:
            [
                (2, 0, "packet too big"), (1, 4, "port unreachable"), (1, 0, "no route"),
                (3, 0, "time exceeded"), (4, 0, "parameter problem"),
            ]
        }
    }
}

/// Parses an ICMP error from a byte array, keeping the typed error.
func parseICMPError(_ bytes: [UInt8]) -> Result<ICMPErrorPacket, PacketError> {
    bytes.withUnsafeBytes { raw in
        Result { () throws(PacketError) in try ICMPErrorPacket.parse(raw) }
    }
}
