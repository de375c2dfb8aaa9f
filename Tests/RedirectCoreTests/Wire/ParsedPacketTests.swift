import RedirectCore
import XCTest

final class ParsedPacketTests: XCTestCase {
    struct Fixture {
        var name: String
        var bytes: [UInt8]
        var family: AddressFamily
        var proto: TransportProtocol
        var source: String
        var sourcePort: UInt16
        var destination: String
        var destinationPort: UInt16
        var tcpFlags: TCPFlags
        var l3HeaderLength: Int
        var l4Length: Int
    }

    static let fixtures: [Fixture] = [
        Fixture(
            name: "IPv4 + TCP SYN with IP and TCP options", bytes: WireFixtures.ipv4TCPWithOptions,
            family: .ipv4, proto: .tcp, source: "192.0.2.1", sourcePort: 40000,
            destination: "198.51.100.7", destinationPort: 80, tcpFlags: [.syn], l3HeaderLength: 24, l4Length: 40),
        Fixture(
            name: "IPv4 + UDP, odd payload", bytes: WireFixtures.ipv4UDP,
            family: .ipv4, proto: .udp, source: "10.1.2.3", sourcePort: 5353,
            destination: "10.9.8.7", destinationPort: 53, tcpFlags: [], l3HeaderLength: 20, l4Length: 13),
        Fixture(
            name: "IPv6 + TCP", bytes: WireFixtures.ipv6TCP,
            family: .ipv6, proto: .tcp, source: "2001:db8::1", sourcePort: 51000,
            destination: "2001:db8:0:1::80", destinationPort: 443, tcpFlags: [.psh, .ack],
            l3HeaderLength: 40, l4Length: 23),
        Fixture(
            name: "IPv6 + HBH, DestOpts, Routing, AH + UDP", bytes: WireFixtures.ipv6ExtensionChainUDP,
            family: .ipv6, proto: .udp, source: "2001:db8:aa::5", sourcePort: 1234,
            destination: "2001:db8:bb::6", destinationPort: 4321, tcpFlags: [],
            l3HeaderLength: 40 + 8 + 8 + 24 + 24, l4Length: 17),
        Fixture(
            name: "IPv4 + UDP, checksum none", bytes: WireFixtures.ipv4UDPChecksumNone,
            family: .ipv4, proto: .udp, source: "172.16.0.1", sourcePort: 68,
            destination: "172.16.0.2", destinationPort: 67, tcpFlags: [], l3HeaderLength: 20, l4Length: 12),
    ]

    func testFixturesParse() throws {
        for fixture in Self.fixtures {
            let packet = try parsePacket(fixture.bytes).get()
            XCTAssertEqual(packet.family, fixture.family, fixture.name)
            XCTAssertEqual(packet.proto, fixture.proto, fixture.name)
            XCTAssertEqual(packet.source, Endpoint(IPAddress(fixture.source)!, fixture.sourcePort), fixture.name)
            XCTAssertEqual(
                packet.destination, Endpoint(IPAddress(fixture.destination)!, fixture.destinationPort), fixture.name)
            XCTAssertEqual(packet.tcpFlags, fixture.tcpFlags, fixture.name)
            XCTAssertEqual(packet.l3HeaderLength, fixture.l3HeaderLength, fixture.name)
            XCTAssertEqual(packet.l4Offset, fixture.l3HeaderLength, fixture.name)
            XCTAssertEqual(packet.l4Length, fixture.l4Length, fixture.name)
            XCTAssertEqual(packet.totalLength, fixture.bytes.count, fixture.name)
            XCTAssertEqual(
                packet.tuple,
                FlowTuple(proto: packet.proto, source: packet.source, destination: packet.destination), fixture.name)
        }
    }

    /// The fixtures carry valid checksums by an outside computation; the reference agrees.
    func testFixtureChecksumsAreValid() throws {
        for fixture in Self.fixtures {
            if fixture.family == .ipv4 {
                XCTAssertEqual(
                    ReferenceChecksum.onesComplementSum(Array(fixture.bytes[0..<fixture.l3HeaderLength])), 0xffff,
                    fixture.name)
            }
            let stored = ReferenceChecksum.storedTransportChecksum(
                fixture.bytes, proto: fixture.proto, l4Offset: fixture.l3HeaderLength)
            if fixture.bytes == WireFixtures.ipv4UDPChecksumNone {
                XCTAssertEqual(stored, 0)
                continue
            }
            XCTAssertEqual(
                stored,
                ReferenceChecksum.transportChecksum(
                    fixture.bytes, family: fixture.family, proto: fixture.proto,
                    l4Offset: fixture.l3HeaderLength, l4Length: fixture.l4Length),
                fixture.name)
        }
    }

    /// Bytes past the IP length are no part of the packet.
    func testTrailingBytesAreIgnored() throws {
        for fixture in Self.fixtures {
            let plain = try parsePacket(fixture.bytes).get()
            let padded = try parsePacket(fixture.bytes + [0xde, 0xad, 0xbe, 0xef, 0x00, 0x45]).get()
            XCTAssertEqual(padded, plain, fixture.name)
        }
    }

    func testParsesTheMutableBufferEntryPointToo() throws {
        var bytes = WireFixtures.ipv6TCP
        let packet = try bytes.withUnsafeMutableBytes { raw throws(PacketError) in try ParsedPacket.parse(raw) }
        XCTAssertEqual(packet, try parsePacket(WireFixtures.ipv6TCP).get())
    }

    /// The don't-fragment bit and the reserved bit are not fragmentation.
    func testDontFragmentIsNotAFragment() throws {
        var bytes = WireFixtures.ipv4UDP
        bytes[6] = 0xc0
        XCTAssertNoThrow(try parsePacket(bytes).get())
    }

    func testUDPFlagsAreEmptyAndTCPFlagsAreTheFlagByte() throws {
        var rng = PacketRandom(seed: 7)
        for _ in 0..<200 {
            let built = WireTestPacket.random(using: &rng)
            let packet = try parsePacket(built.bytes).get()
            XCTAssertEqual(packet.tcpFlags, built.proto == .tcp ? built.tcpFlags : [])
        }
    }

    /// Random valid packets of both families and protocols parse to what they were built from.
    func testRandomValidPacketsParse() throws {
        var rng = PacketRandom(seed: 0x5eed_0001)
        for _ in 0..<2000 {
            let built = WireTestPacket.random(using: &rng)
            let packet = try parsePacket(built.bytes).get()
            XCTAssertEqual(packet.family, built.family)
            XCTAssertEqual(packet.proto, built.proto)
            XCTAssertEqual(packet.source, built.source)
            XCTAssertEqual(packet.destination, built.destination)
            XCTAssertEqual(packet.l3HeaderLength, built.l3HeaderLength)
            XCTAssertEqual(packet.l4Length, built.l4Length)
        }
    }

    func testTCPSequenceSpanCountsDataAndSYNAndFIN() throws {
        var bytes = WireFixtures.ipv4TCPWithOptions  // SYN, 24-byte IP header
        bytes[24 + 4..<24 + 8] = [0xFF, 0xFF, 0xFF, 0xF0]
        let syn = try parsePacket(bytes).get()
        XCTAssertEqual(syn.tcpSequence, TCPSequenceSpan(start: 0xFFFF_FFF0, end: 0xFFFF_FFF1))
        bytes[24 + 13] = 0x11  // FIN+ACK, and 4 bytes of data past a 20-byte header
        bytes[24 + 12] = 0x90  // data offset 9 words = 36 bytes of the 40
        let fin = try parsePacket(bytes).get()
        XCTAssertEqual(fin.tcpSequence, TCPSequenceSpan(start: 0xFFFF_FFF0, end: 0xFFFF_FFF0 &+ 4 &+ 1))
        XCTAssertEqual(try parsePacket(WireFixtures.ipv4UDP).get().tcpSequence, TCPSequenceSpan(start: 0, end: 0))
    }
}
