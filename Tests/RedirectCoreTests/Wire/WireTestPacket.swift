import RedirectCore

/// An IPv6 extension header the test builder lays out: `length` bytes, zero-filled (Pad1
/// options), with next header and length fields filled in.
struct TestExtensionHeader {
    static let hopByHop: UInt8 = 0
    static let routing: UInt8 = 43
    static let fragment: UInt8 = 44
    static let authentication: UInt8 = 51
    static let destinationOptions: UInt8 = 60

    var type: UInt8
    /// A multiple of 8 (AH: of 4, at least 8), at most 2048.
    var length: Int
    var segmentsLeft: UInt8 = 0
}

/// Builds IPv4/IPv6 + TCP/UDP packets byte by byte with the reference checksums, independently
/// of the code under test.
struct WireTestPacket {
    var proto: TransportProtocol
    var source: Endpoint
    var destination: Endpoint
    var tcpFlags: TCPFlags = [.ack]
    var ipv4Options: [UInt8] = []
    var ipv4FragmentField: UInt16 = 0x4000
    var ipv6Extensions: [TestExtensionHeader] = []
    var tcpOptions: [UInt8] = []
    var tcpSequence: UInt32 = 0x0102_0304
    var payload: [UInt8] = []
    var udpChecksumNone = false

    var family: AddressFamily { source.address.family }

    var l3HeaderLength: Int {
        family == .ipv4 ? 20 + ipv4Options.count : 40 + ipv6Extensions.reduce(0) { $0 + $1.length }
    }

    var l4Length: Int { (proto == .tcp ? 20 + tcpOptions.count : 8) + payload.count }

    var bytes: [UInt8] {
        var packet = family == .ipv4 ? ipv4Header() : ipv6Header()
        let l4Offset = packet.count
        packet += proto == .tcp ? tcpHeader() : udpHeader()
        packet += payload
        let field = l4Offset + (proto == .tcp ? 16 : 6)
        if !(proto == .udp && udpChecksumNone && family == .ipv4) {
            let checksum = ReferenceChecksum.transportChecksum(
                packet, family: family, proto: proto, l4Offset: l4Offset, l4Length: l4Length)
            packet[field] = UInt8(checksum >> 8)
            packet[field + 1] = UInt8(checksum & 0xff)
        }
        return packet
    }

    private func ipv4Header() -> [UInt8] {
        let total = l3HeaderLength + l4Length
        var header: [UInt8] = [
            0x40 | UInt8(l3HeaderLength / 4), 0, UInt8(total >> 8), UInt8(total & 0xff),
            0x1c, 0x46, UInt8(ipv4FragmentField >> 8), UInt8(ipv4FragmentField & 0xff),
            64, proto.rawValue, 0, 0,
        ]
        header += ReferenceChecksum.addressBytes(source.address, family: .ipv4)
        header += ReferenceChecksum.addressBytes(destination.address, family: .ipv4)
        header += ipv4Options
        let checksum = ReferenceChecksum.ipv4HeaderChecksum(header)
        header[10] = UInt8(checksum >> 8)
        header[11] = UInt8(checksum & 0xff)
        return header
    }

    private func ipv6Header() -> [UInt8] {
        let payloadLength = l3HeaderLength - 40 + l4Length
        let firstNext = ipv6Extensions.first?.type ?? proto.rawValue
        var header: [UInt8] = [
            0x60, 0x0a, 0xbc, 0xde, UInt8(payloadLength >> 8), UInt8(payloadLength & 0xff), firstNext, 64,
        ]
        header += ReferenceChecksum.addressBytes(source.address, family: .ipv6)
        header += ReferenceChecksum.addressBytes(destination.address, family: .ipv6)
        for (index, ext) in ipv6Extensions.enumerated() {
            var bytes = [UInt8](repeating: 0, count: ext.length)
            bytes[0] = index + 1 < ipv6Extensions.count ? ipv6Extensions[index + 1].type : proto.rawValue
            bytes[1] = UInt8(ext.type == TestExtensionHeader.authentication ? ext.length / 4 - 2 : ext.length / 8 - 1)
            if ext.type == TestExtensionHeader.routing {
                bytes[2] = 4
                bytes[3] = ext.segmentsLeft
            }
            header += bytes
        }
        return header
    }

    private func tcpHeader() -> [UInt8] {
        let s = tcpSequence
        return [
            UInt8(source.port >> 8), UInt8(source.port & 0xff),
            UInt8(destination.port >> 8), UInt8(destination.port & 0xff),
            UInt8(s >> 24), UInt8(s >> 16 & 0xff), UInt8(s >> 8 & 0xff), UInt8(s & 0xff),
            0, 0, 0x12, 0x34, UInt8((20 + tcpOptions.count) / 4) << 4, tcpFlags.rawValue, 0xfa, 0xf0,
            0, 0, 0, 0,
        ] + tcpOptions
    }

    private func udpHeader() -> [UInt8] {
        [
            UInt8(source.port >> 8), UInt8(source.port & 0xff),
            UInt8(destination.port >> 8), UInt8(destination.port & 0xff),
            UInt8(l4Length >> 8), UInt8(l4Length & 0xff), 0, 0,
        ]
    }
}

extension WireTestPacket {
    static func randomAddress(_ family: AddressFamily, using rng: inout PacketRandom) -> IPAddress {
        switch family {
        case .ipv4:
            return IPAddress(ipv4: UInt32.random(in: .min ... .max, using: &rng))
        case .ipv6:
            var address: IPAddress
            repeat {
                address = IPAddress(high: rng.next(), low: rng.next())
            } while address.isIPv4
            return address
        }
    }

    static func randomEndpoint(_ family: AddressFamily, using rng: inout PacketRandom) -> Endpoint {
        Endpoint(randomAddress(family, using: &rng), UInt16.random(in: .min ... .max, using: &rng))
    }

    /// A valid packet: either family and protocol, random addresses, ports, options, extension
    /// headers and payload length (odd lengths included).
    static func random(using rng: inout PacketRandom) -> WireTestPacket {
        let family: AddressFamily = rng.chance(0.5) ? .ipv4 : .ipv6
        let proto: TransportProtocol = rng.chance(0.5) ? .tcp : .udp
        var packet = WireTestPacket(
            proto: proto, source: randomEndpoint(family, using: &rng), destination: randomEndpoint(family, using: &rng))
        packet.tcpFlags = TCPFlags(rawValue: UInt8.random(in: .min ... .max, using: &rng))
        packet.tcpSequence = UInt32.random(in: .min ... .max, using: &rng)
        let payloadLength =
            rng.chance(0.1) ? Int.random(in: 1000...1500, using: &rng) : Int.random(in: 0...64, using: &rng)
        packet.payload = rng.bytes(payloadLength)
        if proto == .tcp && rng.chance(0.5) {
            packet.tcpOptions = rng.bytes(4 * Int.random(in: 1...10, using: &rng))
        }
        switch family {
        case .ipv4:
            if rng.chance(0.3) { packet.ipv4Options = rng.bytes(4 * Int.random(in: 1...10, using: &rng)) }
            packet.ipv4FragmentField = rng.chance(0.5) ? 0x4000 : 0
            packet.udpChecksumNone = proto == .udp && rng.chance(0.2)
        case .ipv6:
            if rng.chance(0.5) { packet.ipv6Extensions = randomExtensionChain(using: &rng) }
        }
        return packet
    }

    /// An RFC 8200 4.1 ordered chain: a subset of Hop-by-Hop, Destination Options, Routing
    /// (no segments left), AH, Destination Options.
    static func randomExtensionChain(using rng: inout PacketRandom) -> [TestExtensionHeader] {
        var chain: [TestExtensionHeader] = []
        let order = [
            TestExtensionHeader.hopByHop, TestExtensionHeader.destinationOptions, TestExtensionHeader.routing,
            TestExtensionHeader.authentication, TestExtensionHeader.destinationOptions,
        ]
        for type in order where rng.chance(0.5) {
            chain.append(TestExtensionHeader(type: type, length: 8 * Int.random(in: 1...4, using: &rng)))
        }
        return chain
    }
}

/// Parses a byte array, keeping the typed error.
func parsePacket(_ bytes: [UInt8]) -> Result<ParsedPacket, PacketError> {
    bytes.withUnsafeBytes { raw in
        Result { () throws(PacketError) in try ParsedPacket.parse(raw) }
    }
}

enum RewriteSide { case source, destination }

/// Rewrites one end of `packet` in `bytes`, returning the refusal if there is one.
func rewritePacket(
    _ packet: inout ParsedPacket, _ bytes: inout [UInt8], _ side: RewriteSide, to endpoint: Endpoint,
    checksumNotReady: Bool
) -> PacketError? {
    bytes.withUnsafeMutableBytes { raw -> PacketError? in
        do throws(PacketError) {
            switch side {
            case .source: try packet.rewriteSource(to: endpoint, in: raw, checksumNotReady: checksumNotReady)
            case .destination: try packet.rewriteDestination(to: endpoint, in: raw, checksumNotReady: checksumNotReady)
            }
            return nil
        } catch {
            return error
        }
    }
}
