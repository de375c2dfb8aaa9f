import Foundation
import RedirectCore
import XCTest

/// ICMP/ICMPv6 errors about a redirected flow, on byte-exact fixtures: every error type of both
/// families, TCP and UDP quotes of every allowed length, both translations; the result must be
/// byte for byte what building the translated error from scratch (full checksums) gives.
final class ICMPErrorTranslationTests: XCTestCase {
    private let client4 = Endpoint(IPAddress("192.0.2.2")!, 40_000)
    private let origin4 = Endpoint(IPAddress("203.0.113.10")!, 80)
    private let proxy4 = Endpoint(IPAddress("192.0.2.1")!, 8080)
    private let router4 = IPAddress("198.51.100.7")!
    private let client6 = Endpoint(IPAddress("2001:db8:1::2")!, 40_000)
    private let origin6 = Endpoint(IPAddress("2001:db8:3::10")!, 80)
    private let proxy6 = Endpoint(IPAddress("2001:db8:1::1")!, 8080)
    private let router6 = IPAddress("2001:db8:9::7")!

    private func ends(_ family: AddressFamily) -> (client: Endpoint, origin: Endpoint, proxy: Endpoint, router: IPAddress) {
        family == .ipv4 ? (client4, origin4, proxy4, router4) : (client6, origin6, proxy6, router6)
    }

    /// A quoted packet with a payload, so quotes can be cut anywhere.
    private func quotedPacket(_ proto: TransportProtocol, from source: Endpoint, to destination: Endpoint) -> WireTestPacket {
        var packet = WireTestPacket(proto: proto, source: source, destination: destination)
        packet.tcpSequence = 0xdead_beef
        packet.payload = (0..<61).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
        return packet
    }

    private enum Translation { case quotedSource(Endpoint), quotedDestination(Endpoint) }

    private func translate(_ bytes: inout [UInt8], _ translation: Translation, checksumNotReady: Bool = false) throws -> ICMPErrorPacket {
        var message = try parseICMPError(bytes).get()
        let failure = bytes.withUnsafeMutableBytes { raw -> PacketError? in
            do throws(PacketError) {
                switch translation {
                case .quotedSource(let endpoint): try message.rewriteQuotedSource(to: endpoint, in: raw, checksumNotReady: checksumNotReady)
                case .quotedDestination(let endpoint): try message.rewriteQuotedDestination(to: endpoint, in: raw, checksumNotReady: checksumNotReady)
                }
                return nil
            } catch {
                return error
            }
        }
        if let failure { throw failure }
        return message
    }

    private func word(_ bytes: [UInt8], _ offset: Int) -> UInt16 { UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1]) }

    /// a - b in one's-complement arithmetic (mod 0xFFFF, where 0 and 0xFFFF are one value).
    private func onesComplementDifference(_ a: UInt16, _ b: UInt16) -> Int {
        ((Int(a) % 0xffff) - (Int(b) % 0xffff) + 0xffff) % 0xffff
    }

    /// The translated error built from scratch, except that a quote ending in the middle of the
    /// TCP checksum field keeps that field's one byte as it was: without the other byte nobody
    /// can update it, and the kernel's NAT (tcp_manip_pkt) leaves a checksum it cannot see whole.
    private func expectedTranslation(_ error: WireTestICMPError, _ translated: WireTestICMPError) -> [UInt8] {
        guard let length = error.quoteLength, error.quoted.proto == .tcp,
            length == error.quoted.l3HeaderLength + TCPChecksumHalf.transportLength
        else { return translated.bytes }
        var quote = translated.quote
        quote[length - 1] = error.quote[length - 1]
        var patched = translated
        patched.quoteOverride = quote
        return patched.bytes
    }

    private enum TCPChecksumHalf {
        /// A TCP quote of this many bytes holds the checksum's high byte only.
        static let transportLength = 17
    }

    /// Every quote length from the quoted IP header plus 8 bytes (RFC 792) to the whole packet.
    private func quoteLengths(_ packet: WireTestPacket) -> ClosedRange<Int> {
        (packet.l3HeaderLength + 8)...(packet.l3HeaderLength + packet.l4Length)
    }

    func testAnErrorAboutAProxysReplyGoesToTheProxyForEveryTypeLengthAndProtocol() throws {
        var checked = 0
        for family in AddressFamily.allCases {
            let (client, origin, proxy, router) = ends(family)
            for proto in TransportProtocol.allCases {
                let origin = Endpoint(origin.address, proto == .udp ? 53 : 80)
                let proxy = Endpoint(proxy.address, proto == .udp ? 5353 : 8080)
                // The reply as it left: original destination -> client; the error goes to its source.
                let reply = quotedPacket(proto, from: origin, to: client)
                for kind in WireTestICMPError.errorKinds(family) {
                    for length in quoteLengths(reply) {
                        let error = WireTestICMPError(
                            outerSource: router, outerDestination: origin.address, type: kind.type, code: kind.code,
                            quoted: reply, quoteLength: length)
                        var bytes = error.bytes
                        let message = try translate(&bytes, .quotedSource(proxy))
                        let expected = expectedTranslation(error, error.with(outerDestination: proxy.address, quotedSource: proxy))
                        XCTAssertEqual(bytes, expected, "\(family) \(proto) \(kind.name), quote of \(length) bytes")
                        XCTAssertEqual(message.quotedTuple, FlowTuple(proto: proto, source: proxy, destination: client))
                        XCTAssertEqual(message.outerDestination, proxy.address)
                        XCTAssertEqual(message.outerSource, router)
                        checked += 1
                    }
                }
            }
        }
        XCTAssertGreaterThan(checked, 1000)
    }

    func testAnErrorAboutAClientsPacketToTheProxyComesFromTheOriginalDestination() throws {
        for family in AddressFamily.allCases {
            let (client, origin, proxy, _) = ends(family)
            for proto in TransportProtocol.allCases {
                // The client's packet as the proxy's host got it; its own stack answers from the proxy address.
                let request = quotedPacket(proto, from: client, to: proxy)
                for kind in WireTestICMPError.errorKinds(family) {
                    for length in quoteLengths(request) {
                        let error = WireTestICMPError(
                            outerSource: proxy.address, outerDestination: client.address, type: kind.type, code: kind.code,
                            quoted: request, quoteLength: length)
                        var bytes = error.bytes
                        let message = try translate(&bytes, .quotedDestination(origin))
                        XCTAssertEqual(
                            bytes, expectedTranslation(error, error.with(outerSource: origin.address, quotedDestination: origin)),
                            "\(family) \(proto) \(kind.name), quote of \(length) bytes")
                        XCTAssertEqual(message.quotedTuple, FlowTuple(proto: proto, source: client, destination: origin))
                    }
                }
            }
        }
    }

    /// An 8-byte TCP quote ends before the TCP checksum: the bytes after the quote are not
    /// there, and nothing but the port, the addresses and the checksums present changes.
    func testAShortTCPQuoteHasNoChecksumToTouchAndTheSequenceNumberPassesUnchanged() throws {
        let reply = quotedPacket(.tcp, from: origin4, to: client4)
        let error = WireTestICMPError(outerSource: router4, outerDestination: origin4.address, type: 3, code: 4, quoted: reply, quoteLength: 28)
        var bytes = error.bytes
        let message = try translate(&bytes, .quotedSource(proxy4))
        XCTAssertNil(message.quotedTransportChecksumOffset)
        XCTAssertEqual(bytes.count, error.bytes.count)
        XCTAssertEqual(Array(bytes[(28 + 20 + 4)..<(28 + 20 + 8)]), [0xde, 0xad, 0xbe, 0xef], "quoted sequence number")
        XCTAssertEqual(bytes, error.with(outerDestination: proxy4.address, quotedSource: proxy4).bytes)
        let full = WireTestICMPError(outerSource: router4, outerDestination: origin4.address, type: 3, code: 4, quoted: reply, quoteLength: 48)
        XCTAssertEqual(try parseICMPError(full.bytes).get().quotedTransportChecksumOffset, 28 + 20 + 16)
    }

    func testAQuotedUDPChecksumOfZeroStaysZero() throws {
        var reply = quotedPacket(.udp, from: Endpoint(origin4.address, 53), to: client4)
        reply.udpChecksumNone = true
        let error = WireTestICMPError(
            outerSource: client4.address, outerDestination: origin4.address, type: 3, code: 3, quoted: reply, quoteLength: 28)
        var bytes = error.bytes
        _ = try translate(&bytes, .quotedSource(Endpoint(proxy4.address, 5353)))
        XCTAssertEqual(Array(bytes[(28 + 20 + 6)..<(28 + 20 + 8)]), [0, 0])
        XCTAssertEqual(bytes, error.with(outerDestination: proxy4.address, quotedSource: Endpoint(proxy4.address, 5353)).bytes)
    }

    /// Incremental updates keep a wrong checksum wrong by exactly as much: the receiver still
    /// sees the corruption. Not-ready checksums are computed in full.
    func testAWrongICMPChecksumStaysWrongAndANotReadyOneIsComputed() throws {
        for family in AddressFamily.allCases {
            let (client, origin, proxy, router) = ends(family)
            let error = WireTestICMPError(
                outerSource: router, outerDestination: origin.address, type: family == .ipv4 ? 3 : 2, code: family == .ipv4 ? 4 : 0,
                quoted: quotedPacket(.tcp, from: origin, to: client))
            let icmpOffset = family == .ipv4 ? 20 : 40
            var corrupted = error.bytes
            corrupted[icmpOffset + 3] ^= 0x01
            let wrongBy = onesComplementDifference(word(corrupted, icmpOffset + 2), word(error.bytes, icmpOffset + 2))
            _ = try translate(&corrupted, .quotedSource(proxy))
            let expected = error.with(outerDestination: proxy.address, quotedSource: proxy).bytes
            XCTAssertNotEqual(corrupted, expected)
            XCTAssertEqual(
                onesComplementDifference(word(corrupted, icmpOffset + 2), word(expected, icmpOffset + 2)), wrongBy,
                "\(family): still wrong, by as much")
            XCTAssertEqual(Array(corrupted[(icmpOffset + 4)...]), Array(expected[(icmpOffset + 4)...]))

            var notReady = error.bytes
            notReady[icmpOffset + 2] = 0x12
            notReady[icmpOffset + 3] = 0x34
            _ = try translate(&notReady, .quotedSource(proxy), checksumNotReady: true)
            XCTAssertEqual(notReady, error.with(outerDestination: proxy.address, quotedSource: proxy).bytes, "\(family)")
        }
    }

    func testTranslatingToTheOtherFamilyIsRefused() throws {
        var bytes = WireTestICMPError(
            outerSource: router4, outerDestination: origin4.address, type: 3, code: 4, quoted: quotedPacket(.tcp, from: origin4, to: client4)
        ).bytes
        let before = bytes
        XCTAssertThrowsError(try translate(&bytes, .quotedSource(proxy6))) { XCTAssertEqual($0 as? PacketError, .familyMismatch) }
        XCTAssertEqual(bytes, before)
    }

    // MARK: Parsing and refusals

    func testTheViewReportsTheQuotedPacket() throws {
        var reply = quotedPacket(.tcp, from: origin6, to: client6)
        reply.ipv6Extensions = [TestExtensionHeader(type: TestExtensionHeader.destinationOptions, length: 16)]
        let error = WireTestICMPError(outerSource: router6, outerDestination: origin6.address, type: 2, quoted: reply, quoteLength: 40 + 16 + 20)
        let message = try parseICMPError(error.bytes).get()
        XCTAssertEqual(message.family, .ipv6)
        XCTAssertEqual(message.type, 2)
        XCTAssertEqual(message.quotedTuple, FlowTuple(proto: .tcp, source: origin6, destination: client6))
        XCTAssertEqual(message.icmpOffset, 40)
        XCTAssertEqual(message.quoteOffset, 48)
        XCTAssertEqual(message.quotedTransportOffset, 48 + 56)
        XCTAssertEqual(message.quotedTransportLength, 20)
        XCTAssertEqual(message.totalLength, error.bytes.count)
    }

    func testMalformedAndForeignErrorsAreRefusedWithTheirReason() {
        let reply4 = quotedPacket(.udp, from: Endpoint(origin4.address, 53), to: client4)
        let reply6 = quotedPacket(.udp, from: Endpoint(origin6.address, 53), to: client6)
        func error4(type: UInt8 = 3, length: Int? = nil, override: [UInt8]? = nil) -> [UInt8] {
            WireTestICMPError(
                outerSource: router4, outerDestination: origin4.address, type: type, code: 3,
                quoted: reply4, quoteLength: length, quoteOverride: override
            ).bytes
        }
        func error6(type: UInt8 = 1, length: Int? = nil, override: [UInt8]? = nil) -> [UInt8] {
            WireTestICMPError(
                outerSource: router6, outerDestination: origin6.address, type: type, code: 4,
                quoted: reply6, quoteLength: length, quoteOverride: override
            ).bytes
        }
        func reason(_ bytes: [UInt8]) -> PacketError? {
            if case .failure(let error) = parseICMPError(bytes) { return error }
            return nil
        }
        // Quotes too short for the ports, at every length below the minimum.
        for length in 0..<28 { XCTAssertEqual(reason(error4(length: length)), .icmpTruncated, "IPv4 quote of \(length)") }
        for length in 0..<48 { XCTAssertEqual(reason(error6(length: length)), .icmpTruncated, "IPv6 quote of \(length)") }
        XCTAssertNil(reason(error4(length: 28)))
        XCTAssertNil(reason(error6(length: 48)))
        // An ICMP header cut short.
        var short = error4(length: 0)
        short.removeLast(4)
        short[3] = UInt8(short.count)
        XCTAssertEqual(reason(short), .icmpTruncated)
        // Not errors: echo, neighbour solicitation, redirect.
        XCTAssertEqual(reason(error4(type: 8)), .unsupportedProtocol)
        XCTAssertEqual(reason(error4(type: 5)), .unsupportedProtocol)
        XCTAssertEqual(reason(error6(type: 128)), .unsupportedProtocol)
        XCTAssertEqual(reason(error6(type: 135)), .unsupportedProtocol)
        // Not ICMP at all.
        XCTAssertEqual(reason(reply4.bytes), .unsupportedProtocol)
        // Quotes of the other family, or broken headers.
        XCTAssertEqual(reason(error4(override: reply6.bytes)), .icmpBadQuote)
        XCTAssertEqual(reason(error6(override: reply4.bytes + [UInt8](repeating: 0, count: 20))), .icmpBadQuote)
        var badIHL = reply4.bytes
        badIHL[0] = 0x44
        XCTAssertEqual(reason(error4(override: badIHL)), .icmpBadQuote)
        var shortTotal = reply4.bytes
        shortTotal[2] = 0
        shortTotal[3] = 19
        XCTAssertEqual(reason(error4(override: shortTotal)), .icmpBadQuote)
        var mapped = reply6.bytes
        mapped.replaceSubrange(8..<24, with: [UInt8](repeating: 0, count: 10) + [0xff, 0xff, 203, 0, 113, 10])
        XCTAssertEqual(reason(error6(override: mapped)), .icmpBadQuote)
        // Quotes the daemon cannot have tracked: other protocols, non-first fragments.
        var echo = reply4.bytes
        echo[9] = 1
        XCTAssertEqual(reason(error4(override: echo)), .icmpQuoteUntracked)
        var laterFragment = reply4
        laterFragment.ipv4FragmentField = 0x0010
        XCTAssertEqual(reason(error4(override: laterFragment.bytes)), .icmpQuoteUntracked)
        var firstFragment = reply4
        firstFragment.ipv4FragmentField = 0x2000
        XCTAssertNil(reason(error4(override: firstFragment.bytes)), "a first fragment has its ports")
        var fragment6 = reply6
        fragment6.ipv6Extensions = [TestExtensionHeader(type: TestExtensionHeader.fragment, length: 8)]
        XCTAssertEqual(reason(error6(override: fragment6.bytes)), .icmpQuoteUntracked)
        XCTAssertTrue(PacketError.icmpQuoteUntracked.isPassUntouched)
        XCTAssertFalse(PacketError.icmpTruncated.isPassUntouched)
        XCTAssertFalse(PacketError.icmpBadQuote.isPassUntouched)
    }

    /// Random bytes after a valid outer header and ICMP error header never crash the parser, and
    /// whatever parses can be translated with every offset inside the buffer, keeping a correct
    /// ICMP checksum correct (the fuzz target's invariant, here in a debug build's bounds checks).
    func testRandomQuotesParseOrRefuseAndTranslateInBounds() {
        var rng = PacketRandom(seed: 15)
        var translated = 0
        for round in 0..<20_000 {
            let family: AddressFamily = rng.chance(0.5) ? .ipv4 : .ipv6
            let (client, origin, proxy, router) = ends(family)
            let kinds = WireTestICMPError.errorKinds(family)
            let kind = kinds[Int.random(in: 0..<kinds.count, using: &rng)]
            var base = quotedPacket(rng.chance(0.5) ? .tcp : .udp, from: origin, to: client)
            if family == .ipv6 && rng.chance(0.3) { base.ipv6Extensions = WireTestPacket.randomExtensionChain(using: &rng) }
            var quote = Array(base.bytes.prefix(Int.random(in: 0...(base.l3HeaderLength + base.l4Length), using: &rng)))
            for _ in 0..<Int.random(in: 0...3, using: &rng) where !quote.isEmpty {
                quote[Int.random(in: 0..<quote.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            }
            var bytes = WireTestICMPError(
                outerSource: router, outerDestination: origin.address, type: kind.type, code: kind.code,
                quoted: base, quoteOverride: quote
            ).bytes
            guard case .success(var message) = parseICMPError(bytes) else { continue }
            XCTAssertGreaterThanOrEqual(message.quotedTransportLength, 8, "round \(round)")
            XCTAssertLessThanOrEqual(message.quotedTransportOffset + message.quotedTransportLength, bytes.count, "round \(round)")
            let target = Endpoint(proxy.address, 8080)
            let failure = bytes.withUnsafeMutableBytes { raw -> PacketError? in
                do throws(PacketError) {
                    try message.rewriteQuotedSource(to: target, in: raw, checksumNotReady: false)
                    return nil
                } catch { return error }
            }
            XCTAssertNil(failure, "round \(round)")
            // The builder checksummed the corrupted quote: the translated message stays valid,
            // and re-parses to the same view.
            let icmpChecksum = UInt16(bytes[message.icmpOffset + 2]) << 8 | UInt16(bytes[message.icmpOffset + 3])
            XCTAssertEqual(bytes.withUnsafeBytes { message.fullChecksum(in: $0) }, icmpChecksum, "round \(round)")
            XCTAssertEqual(try? parseICMPError(bytes).get(), message, "round \(round)")
            translated += 1
        }
        XCTAssertGreaterThan(translated, 5_000, "random quotes that parsed and were translated")
    }
}

/// The fuzzers' ICMP seeds (Fuzz/seeds.py, built with Python's struct module, not the Swift
/// builder): each parses as the error it was written as, with correct checksums, and stays
/// correct after a translation either way.
final class ICMPErrorSeedTests: XCTestCase {
    private static let corpus = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fuzz/Corpus/FuzzPacketParse")

    func testTheFuzzSeedsAreWellFormedErrorsThatTranslateCorrectly() throws {
        let expected: [String: (family: AddressFamily, type: UInt8, proto: TransportProtocol, transport: Int)] = [
            "icmp-frag-needed-tcp8": (.ipv4, 3, .tcp, 8),
            "icmp-port-unreachable-udp": (.ipv4, 3, .udp, 13),
            "icmp-time-exceeded-tcp": (.ipv4, 11, .tcp, 38),
            "icmpv6-packet-too-big-tcp": (.ipv6, 2, .tcp, 20),
            "icmpv6-port-unreachable-udp": (.ipv6, 1, .udp, 8),
        ]
        for (name, seed) in expected {
            var bytes = [UInt8](try Data(contentsOf: Self.corpus.appendingPathComponent(name)))
            var message = try parseICMPError(bytes).get()
            XCTAssertEqual(message.family, seed.family, name)
            XCTAssertEqual(message.type, seed.type, name)
            XCTAssertEqual(message.proto, seed.proto, name)
            XCTAssertEqual(message.quotedTransportLength, seed.transport, name)
            let valid = { (bytes: [UInt8], message: ICMPErrorPacket) -> Bool in
                bytes.withUnsafeBytes {
                    message.fullChecksum(in: $0) == UInt16(bytes[message.icmpOffset + 2]) << 8 | UInt16(bytes[message.icmpOffset + 3])
                }
            }
            XCTAssertTrue(valid(bytes, message), "\(name): the seed's ICMP checksum")
            let target = Endpoint(seed.family == .ipv4 ? IPAddress("192.0.2.1")! : IPAddress("2001:db8:1::1")!, 8080)
            let failure = bytes.withUnsafeMutableBytes { raw -> PacketError? in
                do throws(PacketError) {
                    try message.rewriteQuotedSource(to: target, in: raw, checksumNotReady: false)
                    return nil
                } catch { return error }
            }
            XCTAssertNil(failure, name)
            XCTAssertTrue(valid(bytes, message), "\(name): the translated ICMP checksum")
            XCTAssertEqual(try parseICMPError(bytes).get(), message, name)
            if seed.family == .ipv4 {
                XCTAssertEqual(ReferenceChecksum.ipv4HeaderChecksum(bytes), UInt16(bytes[10]) << 8 | UInt16(bytes[11]), name)
                let quote = Array(bytes[message.quoteOffset...])
                XCTAssertEqual(ReferenceChecksum.ipv4HeaderChecksum(quote), UInt16(quote[10]) << 8 | UInt16(quote[11]), "\(name): quoted header")
            }
        }
    }
}
