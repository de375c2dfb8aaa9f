import RedirectCore
import XCTest

/// ICMP errors through the whole per-packet decision: an error about a redirected flow is
/// translated in the direction it was queued in, as the kernel's NAT translates RELATED
/// traffic; a quote of no flow, or of a flow in the other direction, passes byte for byte; a
/// malformed error is a counted drop; and nothing an error says changes the table.
final class RelatedTrafficTests: XCTestCase {
    private static let routerInterface: UInt32 = 2
    private let rules = DatapathRules(
        policy: RedirectPolicy(rules: [
            try! RedirectRule(parsing: "tcp:80,443:8080", scope: .network),
            try! RedirectRule(parsing: "udp:53:5353", scope: .network),
            try! RedirectRule(parsing: "tcp:9000:8090", scope: .local),
        ]),
        addresses: RedirectAddressBook([
            InterfaceAddress(interfaceIndex: routerInterface, address: IPAddress("192.0.2.1")!, prefixLength: 24),
            InterfaceAddress(interfaceIndex: routerInterface, address: IPAddress("2001:db8:1::1")!, prefixLength: 64),
        ]))
    private let fromNetwork = PacketMetadata(hook: .preRouting, direction: .original, inputInterface: routerInterface)
    private let fromLocal = PacketMetadata(hook: .localOut, direction: .original)
    private let reply = PacketMetadata(hook: .localOut, direction: .reply)

    private struct Ends {
        var client: Endpoint
        var origin: Endpoint
        var proxy: Endpoint
        var router: IPAddress
    }

    private func ends(_ family: AddressFamily, _ proto: TransportProtocol) -> Ends {
        let port: UInt16 = proto == .tcp ? 80 : 53
        let proxyPort: UInt16 = proto == .tcp ? 8080 : 5353
        return family == .ipv4
            ? Ends(
                client: Endpoint(IPAddress("192.0.2.2")!, 40_000), origin: Endpoint(IPAddress("203.0.113.10")!, port),
                proxy: Endpoint(IPAddress("192.0.2.1")!, proxyPort), router: IPAddress("192.0.2.254")!)
            : Ends(
                client: Endpoint(IPAddress("2001:db8:1::2")!, 40_000), origin: Endpoint(IPAddress("2001:db8:3::10")!, port),
                proxy: Endpoint(IPAddress("2001:db8:1::1")!, proxyPort), router: IPAddress("2001:db8:1::fe")!)
    }

    private func makeEngine() -> RedirectEngine {
        RedirectEngine(table: try! FlowTable(configuration: FlowTableConfiguration(limit: 1024, shardCount: 1, seed: 7)))
    }

    private func run(_ engine: RedirectEngine, _ bytes: [UInt8], _ metadata: PacketMetadata, now: UInt32 = 100) -> (Verdict, [UInt8]) {
        var copy = bytes
        let verdict = copy.withUnsafeMutableBytes { engine.process($0, metadata: metadata, rules: rules, now: now) }
        return (verdict, copy)
    }

    /// Opens a redirected flow: the client's first packet and the proxy's answer.
    private func open(_ engine: RedirectEngine, _ e: Ends, proto: TransportProtocol) {
        let first = WireTestPacket(proto: proto, source: e.client, destination: e.origin, tcpFlags: [.syn])
        let answer = WireTestPacket(proto: proto, source: e.proxy, destination: e.client, tcpFlags: [.syn, .ack])
        XCTAssertEqual(run(engine, first.bytes, fromNetwork).0, .acceptModified)
        XCTAssertEqual(run(engine, answer.bytes, reply).0, .acceptModified)
    }

    private func quoted(_ proto: TransportProtocol, _ source: Endpoint, _ destination: Endpoint) -> WireTestPacket {
        var packet = WireTestPacket(proto: proto, source: source, destination: destination)
        packet.payload = [UInt8](repeating: 0x42, count: 1200)
        return packet
    }

    func testErrorsAboutARedirectedFlowAreTranslatedBothWaysInBothFamiliesAndProtocols() {
        for family in AddressFamily.allCases {
            for proto in TransportProtocol.allCases {
                let e = ends(family, proto)
                let engine = makeEngine()
                open(engine, e, proto: proto)
                let recordsBefore = engine.table.records(now: 100)
                let statisticsBefore = engine.table.statistics

                // A router on the way to the client refuses the proxy's reply (as it left: origin -> client).
                let tooBig = WireTestICMPError(
                    outerSource: e.router, outerDestination: e.origin.address, type: family == .ipv4 ? 3 : 2,
                    code: family == .ipv4 ? 4 : 0, quoted: quoted(proto, e.origin, e.client),
                    quoteLength: family == .ipv4 ? 576 - 28 : 1280 - 48)
                var (verdict, bytes) = run(engine, tooBig.bytes, fromNetwork)
                XCTAssertEqual(verdict, .acceptModified, "\(family) \(proto)")
                XCTAssertEqual(
                    bytes, tooBig.with(outerDestination: e.proxy.address, quotedSource: e.proxy).bytes,
                    "\(family) \(proto): to the proxy, about proxy -> client")

                // The client's own stack refuses it (port unreachable), from its own address.
                let unreachable = WireTestICMPError(
                    outerSource: e.client.address, outerDestination: e.origin.address, type: family == .ipv4 ? 3 : 1,
                    code: family == .ipv4 ? 3 : 4, quoted: quoted(proto, e.origin, e.client), quoteLength: family == .ipv4 ? 28 : 48)
                (verdict, bytes) = run(engine, unreachable.bytes, fromNetwork)
                XCTAssertEqual(verdict, .acceptModified)
                XCTAssertEqual(bytes, unreachable.with(outerDestination: e.proxy.address, quotedSource: e.proxy).bytes)

                // The proxy's host refuses a client's packet (client -> proxy): the client hears it from the origin.
                let refused = WireTestICMPError(
                    outerSource: e.proxy.address, outerDestination: e.client.address, type: family == .ipv4 ? 3 : 1,
                    code: family == .ipv4 ? 3 : 4, quoted: quoted(proto, e.client, e.proxy), quoteLength: family == .ipv4 ? 548 : 1232)
                (verdict, bytes) = run(engine, refused.bytes, reply)
                XCTAssertEqual(verdict, .acceptModified)
                XCTAssertEqual(
                    bytes, refused.with(outerSource: e.origin.address, quotedDestination: e.origin).bytes,
                    "\(family) \(proto): from the origin, about client -> origin")

                XCTAssertEqual(engine.counters.relatedTranslated.load, 3)
                XCTAssertEqual(engine.table.records(now: 100), recordsBefore, "errors change no flow, state or timer")
                XCTAssertEqual(engine.table.statistics, statisticsBefore)
            }
        }
    }

    func testQuotesOfNoFlowOrOfTheOtherDirectionPassByteForByte() {
        for family in AddressFamily.allCases {
            let e = ends(family, .tcp)
            let engine = makeEngine()
            open(engine, e, proto: .tcp)
            let recordsBefore = engine.table.records(now: 100)
            let type: UInt8 = family == .ipv4 ? 3 : 1
            let stranger = Endpoint(e.client.address, 40_001)
            let cases: [(WireTestICMPError, PacketMetadata, String)] = [
                (
                    WireTestICMPError(
                        outerSource: e.router, outerDestination: e.origin.address, type: type,
                        quoted: quoted(.tcp, e.origin, stranger), quoteLength: 200),
                    fromNetwork, "a reply to another client port"
                ),
                (
                    WireTestICMPError(
                        outerSource: e.router, outerDestination: e.client.address, type: type,
                        quoted: quoted(.tcp, e.client, e.origin), quoteLength: 200),
                    fromNetwork, "the flow's original tuple as quoted by the wrong side (forged)"
                ),
                (
                    WireTestICMPError(
                        outerSource: e.router, outerDestination: e.proxy.address, type: type,
                        quoted: quoted(.tcp, e.proxy, e.client), quoteLength: 200),
                    fromNetwork, "the proxy's own tuple from the network (forged)"
                ),
                (
                    WireTestICMPError(
                        outerSource: e.router, outerDestination: e.origin.address, type: type,
                        quoted: quoted(.udp, e.origin, e.client), quoteLength: 200),
                    fromNetwork, "the right ends, the wrong protocol"
                ),
                (
                    WireTestICMPError(
                        outerSource: e.proxy.address, outerDestination: e.client.address, type: type,
                        quoted: quoted(.tcp, e.origin, e.client), quoteLength: 200),
                    reply, "a reply-direction quote in the reply queue"
                ),
                (
                    WireTestICMPError(
                        outerSource: e.proxy.address, outerDestination: e.client.address, type: type,
                        quoted: quoted(.tcp, e.client, e.proxy), quoteLength: 200),
                    fromNetwork, "a client -> proxy quote in the original queue"
                ),
            ]
            for (error, metadata, what) in cases {
                let (verdict, bytes) = run(engine, error.bytes, metadata)
                XCTAssertEqual(verdict, .accept, "\(family): \(what)")
                XCTAssertEqual(bytes, error.bytes, "\(family): \(what)")
            }
            XCTAssertEqual(engine.counters.relatedUnmatched.load, UInt64(cases.count))
            XCTAssertEqual(engine.counters.relatedTranslated.load, 0)
            XCTAssertEqual(engine.counters.dropped.load, 0)
            XCTAssertEqual(engine.table.records(now: 100), recordsBefore)
            XCTAssertEqual(engine.table.count, 1)
        }
    }

    func testAnErrorNeverRevivesOrCreatesAFlow() {
        let e = ends(.ipv4, .udp)
        let engine = makeEngine()
        let unreachable = WireTestICMPError(
            outerSource: e.client.address, outerDestination: e.origin.address, type: 3, code: 3,
            quoted: quoted(.udp, e.origin, e.client), quoteLength: 28)
        XCTAssertEqual(run(engine, unreachable.bytes, fromNetwork).0, .accept, "no flow yet")
        XCTAssertEqual(engine.table.count, 0)
        open(engine, e, proto: .udp)
        let later: UInt32 = 100 + 100_000
        let (verdict, bytes) = run(engine, unreachable.bytes, fromNetwork, now: later)
        XCTAssertEqual(verdict, .accept, "an expired flow is not matched")
        XCTAssertEqual(bytes, unreachable.bytes)
        XCTAssertEqual(engine.table.count, 1, "and not removed either: the error is only read")
        XCTAssertEqual(engine.counters.relatedUnmatched.load, 2)
    }

    func testAnErrorAboutATrackedButNotRedirectedFlowPasses() {
        let engine = makeEngine()
        let e = ends(.ipv4, .tcp)
        // A client dialling the proxy port directly: tracked, not redirected.
        XCTAssertEqual(
            run(engine, WireTestPacket(proto: .tcp, source: e.client, destination: e.proxy, tcpFlags: [.syn]).bytes, fromNetwork).0, .accept)
        let error = WireTestICMPError(
            outerSource: e.router, outerDestination: e.proxy.address, type: 3, code: 4,
            quoted: quoted(.tcp, e.proxy, e.client), quoteLength: 100)
        let (verdict, bytes) = run(engine, error.bytes, fromNetwork)
        XCTAssertEqual(verdict, .accept)
        XCTAssertEqual(bytes, error.bytes)
        XCTAssertEqual(engine.counters.relatedNotRedirected.load, 1)
    }

    func testLocalFlowsTranslateInTheLocalOriginalQueueToo() {
        let engine = makeEngine()
        let client = Endpoint(IPAddress("198.51.100.1")!, 41_000)
        let origin = Endpoint(IPAddress("203.0.113.10")!, 9000)
        let proxy = Endpoint(IPAddress("127.0.0.1")!, 8090)
        XCTAssertEqual(
            run(engine, WireTestPacket(proto: .tcp, source: client, destination: origin, tcpFlags: [.syn]).bytes, fromLocal).0, .acceptModified)
        let error = WireTestICMPError(
            outerSource: client.address, outerDestination: origin.address, type: 3, code: 3,
            quoted: quoted(.tcp, origin, client), quoteLength: 100)
        let (verdict, bytes) = run(engine, error.bytes, fromLocal)
        XCTAssertEqual(verdict, .acceptModified)
        XCTAssertEqual(bytes, error.with(outerDestination: proxy.address, quotedSource: proxy).bytes)
    }

    func testMalformedErrorsAreCountedDropsAndOrdinaryICMPPasses() {
        let engine = makeEngine()
        let e = ends(.ipv4, .tcp)
        open(engine, e, proto: .tcp)
        let base = WireTestICMPError(
            outerSource: e.router, outerDestination: e.origin.address, type: 3, code: 4,
            quoted: quoted(.tcp, e.origin, e.client))
        var truncated = base
        truncated.quoteLength = 27
        var badQuote = base
        badQuote.quoteOverride = [0x60] + [UInt8](repeating: 0, count: 47)
        var echo = base
        echo.type = 8
        var icmpInIcmp = base
        icmpInIcmp.quoteOverride = Array(base.bytes.prefix(48))
        for (error, verdict, reason) in [
            (truncated, Verdict.drop, PacketError.icmpTruncated), (badQuote, .drop, .icmpBadQuote),
            (echo, .accept, .unsupportedProtocol), (icmpInIcmp, .accept, .icmpQuoteUntracked),
        ] {
            let (got, bytes) = run(engine, error.bytes, fromNetwork)
            XCTAssertEqual(got, verdict, reason.label)
            XCTAssertEqual(bytes, error.bytes, reason.label)
            XCTAssertEqual(engine.counters.packetErrors[reason.counterIndex].load, 1, reason.label)
        }
        XCTAssertEqual(engine.counters.dropped.load, 2)
        XCTAssertEqual(engine.table.count, 1)
    }
}
