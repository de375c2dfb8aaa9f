import RedirectCore
import XCTest

final class PacketRewriterTests: XCTestCase {
    private func parsed(_ bytes: [UInt8], line: UInt = #line) throws -> ParsedPacket {
        try parsePacket(bytes).get()
    }

    private func assertChecksumsValid(
        _ bytes: [UInt8], _ packet: ParsedPacket, allowNone: Bool = false, _ message: String = "", line: UInt = #line
    ) {
        if packet.family == .ipv4 {
            XCTAssertEqual(
                ReferenceChecksum.onesComplementSum(Array(bytes[0..<packet.l3HeaderLength])), 0xffff,
                "IPv4 header \(message)", line: line)
        }
        let stored = ReferenceChecksum.storedTransportChecksum(bytes, proto: packet.proto, l4Offset: packet.l4Offset)
        if allowNone && stored == 0 { return }
        XCTAssertEqual(
            stored,
            ReferenceChecksum.transportChecksum(
                bytes, family: packet.family, proto: packet.proto, l4Offset: packet.l4Offset,
                l4Length: packet.l4Length),
            "L4 \(message)", line: line)
    }

    /// The core property: for random valid packets, an incremental rewrite of either end gives
    /// exactly the bytes of the same packet built with the new endpoint and full checksums,
    /// and the inverse rewrite restores the original bytes exactly.
    func testIncrementalRewriteEqualsFullRecomputeAndInverts() throws {
        var rng = PacketRandom(seed: 0xbeef_0001)
        for round in 0..<5000 {
            let built = WireTestPacket.random(using: &rng)
            let original = built.bytes
            var bytes = original
            var packet = try parsed(bytes)
            let side: RewriteSide = round % 2 == 0 ? .destination : .source
            let target = WireTestPacket.randomEndpoint(built.family, using: &rng)

            XCTAssertNil(rewritePacket(&packet, &bytes, side, to: target, checksumNotReady: false))
            var expected = built
            if side == .destination { expected.destination = target } else { expected.source = target }
            XCTAssertEqual(bytes, expected.bytes, "round \(round): \(built.family) \(built.proto) \(side)")
            XCTAssertEqual(packet, try parsed(bytes))

            let back = side == .destination ? built.destination : built.source
            XCTAssertNil(rewritePacket(&packet, &bytes, side, to: back, checksumNotReady: false))
            XCTAssertEqual(bytes, original, "round \(round): inverse")
        }
    }

    /// Rewriting both ends (as a full NAT would) still matches a full recompute.
    func testRewritingBothEnds() throws {
        var rng = PacketRandom(seed: 0xbeef_0002)
        for _ in 0..<1000 {
            var built = WireTestPacket.random(using: &rng)
            var bytes = built.bytes
            var packet = try parsed(bytes)
            built.source = WireTestPacket.randomEndpoint(built.family, using: &rng)
            built.destination = WireTestPacket.randomEndpoint(built.family, using: &rng)
            XCTAssertNil(rewritePacket(&packet, &bytes, .destination, to: built.destination, checksumNotReady: false))
            XCTAssertNil(rewritePacket(&packet, &bytes, .source, to: built.source, checksumNotReady: false))
            XCTAssertEqual(bytes, built.bytes)
        }
    }

    /// NFQA_SKB_CSUMNOTREADY: the field holds only the folded pseudo-header sum (what the
    /// kernel leaves for the NIC). The rewrite must produce the full, valid checksum.
    func testChecksumNotReadyComputesTheFullChecksum() throws {
        var rng = PacketRandom(seed: 0xbeef_0003)
        for round in 0..<3000 {
            var built = WireTestPacket.random(using: &rng)
            built.udpChecksumNone = false
            var bytes = built.bytes
            let packet = try parsed(bytes)
            let field = packet.l4Offset + (packet.proto == .tcp ? 16 : 6)
            let partial = ReferenceChecksum.onesComplementSum(
                ReferenceChecksum.pseudoHeader(
                    family: packet.family, source: packet.source.address, destination: packet.destination.address,
                    proto: packet.proto.rawValue, length: packet.l4Length))
            bytes[field] = UInt8(partial >> 8)
            bytes[field + 1] = UInt8(partial & 0xff)

            var rewritten = packet
            let side: RewriteSide = round % 2 == 0 ? .destination : .source
            let target = WireTestPacket.randomEndpoint(packet.family, using: &rng)
            XCTAssertNil(rewritePacket(&rewritten, &bytes, side, to: target, checksumNotReady: true))
            var expected = built
            if side == .destination { expected.destination = target } else { expected.source = target }
            XCTAssertEqual(bytes, expected.bytes, "round \(round)")
            assertChecksumsValid(bytes, rewritten)
        }
    }

    /// Why the flag matters: an incremental update of a partial checksum is not a valid checksum.
    func testIncrementalUpdateOfAPartialChecksumWouldBeWrong() throws {
        var bytes = WireFixtures.ipv4TCPWithOptions
        let packet = try parsed(bytes)
        let partial = ReferenceChecksum.onesComplementSum(
            ReferenceChecksum.pseudoHeader(
                family: .ipv4, source: packet.source.address, destination: packet.destination.address,
                proto: 6, length: packet.l4Length))
        bytes[packet.l4Offset + 16] = UInt8(partial >> 8)
        bytes[packet.l4Offset + 17] = UInt8(partial & 0xff)
        var wrong = packet
        var wrongBytes = bytes
        let target = Endpoint(IPAddress("127.0.0.1")!, 8080)
        XCTAssertNil(rewritePacket(&wrong, &wrongBytes, .destination, to: target, checksumNotReady: false))
        XCTAssertNotEqual(
            ReferenceChecksum.storedTransportChecksum(wrongBytes, proto: .tcp, l4Offset: packet.l4Offset),
            ReferenceChecksum.transportChecksum(wrongBytes, family: .ipv4, proto: .tcp, l4Offset: 24, l4Length: 40))
        var right = packet
        XCTAssertNil(rewritePacket(&right, &bytes, .destination, to: target, checksumNotReady: true))
        assertChecksumsValid(bytes, right)
    }

    func testFixturesRewriteToValidChecksums() throws {
        for fixture in ParsedPacketTests.fixtures {
            for notReady in [false, true] {
                var bytes = fixture.bytes
                var packet = try parsed(bytes)
                let target = Endpoint(fixture.family == .ipv4 ? .ipv4Loopback : .ipv6Loopback, 8080)
                XCTAssertNil(rewritePacket(&packet, &bytes, .destination, to: target, checksumNotReady: notReady))
                XCTAssertEqual(try parsed(bytes).destination, target)
                assertChecksumsValid(bytes, packet, allowNone: !notReady, fixture.name)
            }
        }
    }

    func testIPv4UDPChecksumNoneStaysNone() throws {
        var bytes = WireFixtures.ipv4UDPChecksumNone
        var packet = try parsed(bytes)
        XCTAssertNil(
            rewritePacket(&packet, &bytes, .destination, to: Endpoint(.ipv4Loopback, 5353), checksumNotReady: false))
        XCTAssertEqual(ReferenceChecksum.storedTransportChecksum(bytes, proto: .udp, l4Offset: 20), 0)
        assertChecksumsValid(bytes, packet, allowNone: true)
    }

    /// A UDP datagram whose checksum computes to 0 carries 0xFFFF, before and after a rewrite.
    func testComputedUDPZeroIsWrittenAsAllOnes() throws {
        // Payload words chosen so the whole sum is 0xFFFF: the checksum computes to 0.
        var built = WireTestPacket(
            proto: .udp, source: Endpoint(IPAddress("10.0.0.1")!, 1), destination: Endpoint(IPAddress("10.0.0.2")!, 2),
            payload: [0, 0])
        let sumWithoutFiller = ReferenceChecksum.onesComplementSum(
            ReferenceChecksum.pseudoHeader(
                family: .ipv4, source: built.source.address, destination: built.destination.address, proto: 17,
                length: 10) + [0, 1, 0, 2, 0, 10, 0, 0])
        let filler = ~sumWithoutFiller
        built.payload = [UInt8(filler >> 8), UInt8(filler & 0xff)]
        let original = built.bytes
        XCTAssertEqual(ReferenceChecksum.storedTransportChecksum(original, proto: .udp, l4Offset: 20), 0xffff)

        // Rewrite away and back: the incremental path also lands on 0xFFFF, never 0.
        var bytes = original
        var packet = try parsed(bytes)
        let elsewhere = Endpoint(IPAddress("10.0.0.9")!, 7)
        XCTAssertNil(rewritePacket(&packet, &bytes, .source, to: elsewhere, checksumNotReady: false))
        XCTAssertNil(rewritePacket(&packet, &bytes, .source, to: built.source, checksumNotReady: false))
        XCTAssertEqual(bytes, original)
        XCTAssertNil(rewritePacket(&packet, &bytes, .source, to: built.source, checksumNotReady: true))
        XCTAssertEqual(bytes, original)
    }

    func testIPv6UDPChecksumZeroGetsAFullChecksum() throws {
        var bytes = WireFixtures.ipv6ExtensionChainUDP
        let l4Offset = bytes.count - 17
        bytes[l4Offset + 6] = 0
        bytes[l4Offset + 7] = 0
        var packet = try parsed(bytes)
        XCTAssertNil(
            rewritePacket(&packet, &bytes, .destination, to: Endpoint(.ipv6Loopback, 53), checksumNotReady: false))
        assertChecksumsValid(bytes, packet)
    }

    /// The one's-complement sum a receiver verifies (0xFFFF when the checksum is right).
    private func transportResidual(_ bytes: [UInt8], _ packet: ParsedPacket) -> UInt16 {
        ReferenceChecksum.onesComplementSum(
            ReferenceChecksum.pseudoHeader(
                family: packet.family, source: packet.source.address, destination: packet.destination.address,
                proto: packet.proto.rawValue, length: packet.l4Length)
                + bytes[packet.l4Offset..<packet.totalLength])
    }

    /// A wrong IPv4 header checksum comes out right; a wrong L4 checksum stays exactly as
    /// wrong (the receiver's verification sum is unchanged), so the receiver still drops it.
    func testWrongChecksumsOnInput() throws {
        var bytes = WireFixtures.ipv4TCPWithOptions
        bytes[10] ^= 0x5a
        bytes[24 + 16] ^= 0x01
        var packet = try parsed(bytes)
        let residual = transportResidual(bytes, packet)
        XCTAssertNotEqual(residual, 0xffff)
        XCTAssertNil(
            rewritePacket(&packet, &bytes, .destination, to: Endpoint(.ipv4Loopback, 8080), checksumNotReady: false))
        XCTAssertEqual(ReferenceChecksum.onesComplementSum(Array(bytes[0..<24])), 0xffff)
        XCTAssertEqual(transportResidual(bytes, packet), residual)
    }

    func testFamilyMismatchIsRefusedAndChangesNothing() throws {
        for (bytes, target) in [
            (WireFixtures.ipv4UDP, Endpoint(.ipv6Loopback, 1)), (WireFixtures.ipv6TCP, Endpoint(.ipv4Loopback, 1)),
        ] {
            var mutable = bytes
            var packet = try parsed(bytes)
            let before = packet
            XCTAssertEqual(
                rewritePacket(&packet, &mutable, .destination, to: target, checksumNotReady: false), .familyMismatch)
            XCTAssertEqual(mutable, bytes)
            XCTAssertEqual(packet, before)
        }
    }

    func testBufferShorterThanThePacketIsRefused() throws {
        let packet = try parsed(WireFixtures.ipv4UDP)
        var short = Array(WireFixtures.ipv4UDP.dropLast())
        var copy = packet
        XCTAssertEqual(
            rewritePacket(&copy, &short, .destination, to: Endpoint(.ipv4Loopback, 1), checksumNotReady: false),
            .truncated)
    }

    func testTrailingBytesAreLeftAlone() throws {
        let trailer: [UInt8] = [0xde, 0xad, 0xbe, 0xef, 0x01]
        for fixture in ParsedPacketTests.fixtures {
            var bytes = fixture.bytes + trailer
            var packet = try parsed(bytes)
            let target = Endpoint(fixture.family == .ipv4 ? .ipv4Loopback : .ipv6Loopback, 1)
            XCTAssertNil(rewritePacket(&packet, &bytes, .destination, to: target, checksumNotReady: true))
            XCTAssertEqual(Array(bytes.suffix(trailer.count)), trailer, fixture.name)
            assertChecksumsValid(bytes, packet, fixture.name)
        }
    }
}
