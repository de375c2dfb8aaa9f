import RedirectCore
import XCTest

/// Lying, cut and looping packets: each must be refused with its reason, never trap.
final class HostilePacketTests: XCTestCase {
    private func assertRefused(
        _ bytes: [UInt8], _ expected: PacketError, _ message: String = "", line: UInt = #line
    ) {
        switch parsePacket(bytes) {
        case .success(let packet): XCTFail("parsed \(packet) \(message)", line: line)
        case .failure(let error): XCTAssertEqual(error, expected, message, line: line)
        }
    }

    private static let v4 = Endpoint(IPAddress("192.0.2.10")!, 1000)
    private static let v4Peer = Endpoint(IPAddress("198.51.100.20")!, 2000)
    private static let v6 = Endpoint(IPAddress("2001:db8::10")!, 1000)
    private static let v6Peer = Endpoint(IPAddress("2001:db8::20")!, 2000)

    private func ipv6UDP(_ extensions: [TestExtensionHeader]) -> [UInt8] {
        var packet = WireTestPacket(proto: .udp, source: Self.v6, destination: Self.v6Peer, payload: [1, 2, 3])
        packet.ipv6Extensions = extensions
        return packet.bytes
    }

    func testEveryTruncationOfEveryFixtureIsRefusedAsTruncated() {
        for fixture in ParsedPacketTests.fixtures {
            for length in 0..<fixture.bytes.count {
                assertRefused(Array(fixture.bytes[0..<length]), .truncated, "\(fixture.name) cut at \(length)")
            }
        }
    }

    func testEveryTruncationOfRandomPacketsIsRefusedAsTruncated() {
        var rng = PacketRandom(seed: 0x7e57_0002)
        for _ in 0..<100 {
            let bytes = WireTestPacket.random(using: &rng).bytes
            for length in 0..<bytes.count {
                assertRefused(Array(bytes[0..<length]), .truncated, "cut at \(length)")
            }
        }
    }

    func testVersionLies() {
        for version: UInt8 in [0, 1, 5, 7, 15] {
            var bytes = WireFixtures.ipv4UDP
            bytes[0] = version << 4 | 5
            assertRefused(bytes, .badVersion, "version \(version)")
        }
        assertRefused([0x45], .truncated)
        assertRefused([0x60], .truncated)
    }

    func testIHLLies() {
        for ihl: UInt8 in 0..<5 {
            var bytes = WireFixtures.ipv4UDP
            bytes[0] = 0x40 | ihl
            assertRefused(bytes, .badIHL, "IHL \(ihl)")
        }
        // A header longer than the whole packet.
        var bytes = WireFixtures.ipv4UDP
        bytes[0] = 0x4f
        assertRefused(bytes, .lengthMismatch)
        // A header that swallows the UDP header: the rest is too short for UDP.
        bytes = WireFixtures.ipv4UDP
        bytes[0] = 0x47
        assertRefused(bytes, .transportTruncated)
        // IHL 6 on the TCP fixture (really 6): claim 7, and the TCP header shifts by 4 bytes.
        bytes = WireFixtures.ipv4TCPWithOptions
        bytes[0] = 0x47
        XCTAssertThrowsError(try parsePacket(bytes).get())
    }

    func testTotalLengthLies() {
        var bytes = WireFixtures.ipv4TCPWithOptions
        bytes[2] = 0
        bytes[3] = UInt8(bytes.count + 1)
        assertRefused(bytes, .truncated, "longer than the buffer")
        bytes[3] = 23
        assertRefused(bytes, .lengthMismatch, "shorter than the header")
        bytes[3] = 0
        assertRefused(bytes, .jumbogram, "zero, as BIG TCP sends")
        bytes[3] = 24 + 19
        assertRefused(bytes, .transportTruncated, "too short for TCP")
        bytes[3] = 24 + 39
        assertRefused(bytes, .badTCPDataOffset, "shorter than the TCP options")
        bytes[2] = 0xff
        bytes[3] = 0xff
        assertRefused(bytes, .truncated, "65535")

        var v6 = WireFixtures.ipv6TCP
        v6[4] = 0
        v6[5] = UInt8(v6.count - 40 + 1)
        assertRefused(v6, .truncated)
        v6[5] = 0
        assertRefused(v6, .jumbogram)
        v6[5] = 19
        assertRefused(v6, .transportTruncated)
    }

    func testIPv6PayloadLengthZeroWithoutBytesBehindIt() {
        var header = Array(WireFixtures.ipv6TCP[0..<40])
        header[4] = 0
        header[5] = 0
        assertRefused(header, .transportTruncated, "TCP with nothing")
        header[6] = 59
        assertRefused(header, .unsupportedProtocol, "No Next Header")
    }

    func testTCPDataOffsetLies() {
        for dataOffset: UInt8 in [0, 1, 4, 11, 15] {
            var bytes = WireFixtures.ipv4TCPWithOptions
            bytes[24 + 12] = dataOffset << 4
            assertRefused(bytes, .badTCPDataOffset, "data offset \(dataOffset)")
        }
        // Exactly the whole segment is fine.
        var bytes = WireFixtures.ipv4TCPWithOptions
        bytes[24 + 12] = 10 << 4
        XCTAssertNoThrow(try parsePacket(bytes).get())
    }

    func testUDPLengthLies() {
        for claimed in [0, 7, 8, 12, 14, 0xffff] {
            var bytes = WireFixtures.ipv4UDP
            bytes[24] = UInt8(claimed >> 8)
            bytes[25] = UInt8(claimed & 0xff)
            assertRefused(bytes, .badUDPLength, "UDP length \(claimed)")
        }
        var v6 = WireFixtures.ipv6ExtensionChainUDP
        v6[v6.count - 17 + 5] += 1
        assertRefused(v6, .badUDPLength)
    }

    func testIPv4FragmentsAreRefused() {
        for field: UInt16 in [0x2000, 0x0001, 0x2001, 0x1fff, 0x6000, 0x4001] {
            var bytes = WireFixtures.ipv4UDP
            bytes[6] = UInt8(field >> 8)
            bytes[7] = UInt8(field & 0xff)
            assertRefused(bytes, .fragment, "fragment field \(field)")
        }
        var icmp = WireFixtures.ipv4UDP
        icmp[6] = 0x20
        icmp[9] = 1
        assertRefused(icmp, .fragment, "a fragment is a fragment whatever it carries")
    }

    func testIPv6FragmentHeaderIsRefused() {
        assertRefused(ipv6UDP([TestExtensionHeader(type: TestExtensionHeader.fragment, length: 8)]), .fragment)
        assertRefused(
            ipv6UDP([
                TestExtensionHeader(type: TestExtensionHeader.hopByHop, length: 8),
                TestExtensionHeader(type: TestExtensionHeader.fragment, length: 8),
            ]), .fragment)
    }

    func testUnsupportedProtocolsPassUntouched() {
        for proto: UInt8 in [1, 2, 47, 50, 132, 255] {
            var bytes = WireFixtures.ipv4UDP
            bytes[9] = proto
            assertRefused(bytes, .unsupportedProtocol, "IPv4 protocol \(proto)")
        }
        for next: UInt8 in [58, 59, 50, 135, 253] {
            var bytes = WireFixtures.ipv6TCP
            bytes[6] = next
            assertRefused(bytes, .unsupportedProtocol, "IPv6 next header \(next)")
        }
        XCTAssertTrue(PacketError.unsupportedProtocol.isPassUntouched)
    }

    func testMappedAddressesInIPv6AreRefused() {
        let mapped: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1]  // ::ffff:192.0.2.1
        for (name, offset) in [("source", 8), ("destination", 24)] {
            var bytes = WireFixtures.ipv6TCP
            bytes.replaceSubrange(offset..<offset + 16, with: mapped)
            assertRefused(bytes, .mappedAddressInIPv6, name)
        }
    }

    func testExtensionChainCaps() {
        let destinationOptions = TestExtensionHeader(type: TestExtensionHeader.destinationOptions, length: 8)
        XCTAssertNoThrow(try parsePacket(ipv6UDP(Array(repeating: destinationOptions, count: 8))).get())
        assertRefused(ipv6UDP(Array(repeating: destinationOptions, count: 9)), .ipv6ExtensionChainTooLong)
        assertRefused(ipv6UDP(Array(repeating: destinationOptions, count: 40)), .ipv6ExtensionChainTooLong)

        let big = TestExtensionHeader(type: TestExtensionHeader.destinationOptions, length: 2048)
        XCTAssertNoThrow(try parsePacket(ipv6UDP([big, big])).get())
        assertRefused(ipv6UDP([big, big, destinationOptions]), .ipv6ExtensionChainTooLong)
    }

    func testHopByHopOnlyFirst() {
        let hopByHop = TestExtensionHeader(type: TestExtensionHeader.hopByHop, length: 8)
        let destinationOptions = TestExtensionHeader(type: TestExtensionHeader.destinationOptions, length: 8)
        XCTAssertNoThrow(try parsePacket(ipv6UDP([hopByHop, destinationOptions])).get())
        assertRefused(ipv6UDP([destinationOptions, hopByHop]), .ipv6HopByHopMisplaced)
        assertRefused(ipv6UDP([hopByHop, hopByHop]), .ipv6HopByHopMisplaced, "a Hop-by-Hop loop")
    }

    func testExtensionHeaderRunningPastThePayload() {
        var bytes = ipv6UDP([TestExtensionHeader(type: TestExtensionHeader.destinationOptions, length: 8)])
        bytes[41] = 1  // now claims 16 bytes, leaving the UDP header short by 8
        assertRefused(bytes, .transportTruncated)
        bytes[41] = 2  // 24 bytes: runs past the 19-byte payload
        assertRefused(bytes, .ipv6ExtensionTruncated)
        bytes[41] = 255
        assertRefused(bytes, .ipv6ExtensionTruncated)
        // An extension header announced but fewer than 8 bytes left.
        var short = Array(WireFixtures.ipv6TCP[0..<44])
        short[4] = 0
        short[5] = 4
        short[6] = 60
        assertRefused(short, .ipv6ExtensionTruncated)
        // AH length counts 4-byte units: 255 -> 1028 bytes.
        var ah = ipv6UDP([TestExtensionHeader(type: TestExtensionHeader.authentication, length: 16)])
        ah[41] = 255
        assertRefused(ah, .ipv6ExtensionTruncated)
    }

    func testRoutingHeaderWithSegmentsLeftPassesUntouched() {
        var routing = TestExtensionHeader(type: TestExtensionHeader.routing, length: 24)
        XCTAssertNoThrow(try parsePacket(ipv6UDP([routing])).get())
        routing.segmentsLeft = 1
        assertRefused(ipv6UDP([routing]), .ipv6RoutingInProgress)
        XCTAssertTrue(PacketError.ipv6RoutingInProgress.isPassUntouched)
    }

    /// Random bytes, and valid packets with random bytes flipped: parse never traps, and
    /// whatever it accepts is self-consistent and rewritable.
    func testRandomAndMutatedBytesNeverTrap() throws {
        var rng = PacketRandom(seed: 0xf022_0003)
        var accepted = 0
        for round in 0..<30_000 {
            var bytes: [UInt8]
            if round % 3 == 0 {
                bytes = rng.bytes(Int.random(in: 0...120, using: &rng))
                if !bytes.isEmpty { bytes[0] = (rng.chance(0.5) ? 0x40 : 0x60) | (bytes[0] & 0x0f) }
            } else {
                bytes = WireTestPacket.random(using: &rng).bytes
                for _ in 0..<Int.random(in: 1...4, using: &rng) {
                    let index = Int.random(in: 0..<min(bytes.count, 80), using: &rng)
                    bytes[index] = UInt8.random(in: .min ... .max, using: &rng)
                }
            }
            guard case .success(var packet) = parsePacket(bytes) else { continue }
            accepted += 1
            XCTAssertLessThanOrEqual(packet.totalLength, bytes.count)
            XCTAssertEqual(packet.l4Offset, packet.l3HeaderLength)
            XCTAssertGreaterThanOrEqual(packet.l4Length, packet.proto == .tcp ? 20 : 8)
            let target = WireTestPacket.randomEndpoint(packet.family, using: &rng)
            let notReady = rng.chance(0.5)
            XCTAssertNil(rewritePacket(&packet, &bytes, .destination, to: target, checksumNotReady: notReady))
            XCTAssertEqual(try parsePacket(bytes).get().destination, target)
        }
        XCTAssertGreaterThan(accepted, 1000)
    }
}
