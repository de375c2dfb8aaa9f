import RedirectCore
import XCTest

/// The whole per-packet decision on byte-exact packets: a redirected flow's packets are
/// rewritten both ways with checksums a reference implementation accepts, and everything
/// that is not ours passes byte for byte untouched.
final class RedirectEngineTests: XCTestCase {
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

    private func makeEngine(limit: Int = 1024) -> RedirectEngine {
        RedirectEngine(table: try! FlowTable(configuration: FlowTableConfiguration(limit: limit, shardCount: 1, timeouts: FlowTimeouts(), seed: 7)))
    }

    private func endpoint(_ text: String, _ port: UInt16) -> Endpoint { Endpoint(IPAddress(text)!, port) }

    /// Runs the engine on a copy of `packet`'s bytes; returns the verdict and the bytes after.
    private func run(_ engine: RedirectEngine, _ packet: WireTestPacket, _ metadata: PacketMetadata, now: UInt32 = 100) -> (Verdict, [UInt8]) {
        var bytes = packet.bytes
        let verdict = bytes.withUnsafeMutableBytes { engine.process($0, metadata: metadata, rules: rules, now: now) }
        return (verdict, bytes)
    }

    /// The bytes `packet` would have with other addresses: what a correct rewrite must produce.
    private func expected(_ packet: WireTestPacket, source: Endpoint? = nil, destination: Endpoint? = nil) -> [UInt8] {
        var changed = packet
        changed.source = source ?? packet.source
        changed.destination = destination ?? packet.destination
        return changed.bytes
    }

    func testATCPConnectionIsRedirectedBothWaysInBothFamilies() {
        for (client, server, proxy) in [
            (endpoint("192.0.2.2", 40000), endpoint("203.0.113.10", 80), endpoint("192.0.2.1", 8080)),
            (endpoint("2001:db8:1::2", 40000), endpoint("2001:db8:3::10", 443), endpoint("2001:db8:1::1", 8080)),
        ] {
            let engine = makeEngine()
            var syn = WireTestPacket(proto: .tcp, source: client, destination: server, tcpFlags: [.syn])
            syn.tcpOptions = [2, 4, 0x05, 0xb4]
            var (verdict, bytes) = run(engine, syn, fromNetwork)
            XCTAssertEqual(verdict, .acceptModified)
            XCTAssertEqual(bytes, expected(syn, destination: proxy), "SYN to the proxy, checksums recomputed exactly")

            let synAck = WireTestPacket(proto: .tcp, source: proxy, destination: client, tcpFlags: [.syn, .ack])
            (verdict, bytes) = run(engine, synAck, reply)
            XCTAssertEqual(verdict, .acceptModified)
            XCTAssertEqual(bytes, expected(synAck, source: server), "the client sees the server answer")

            var data = WireTestPacket(proto: .tcp, source: client, destination: server, tcpFlags: [.ack, .psh])
            data.payload = Array("GET / HTTP/1.1\r\n\r\n".utf8)
            (verdict, bytes) = run(engine, data, fromNetwork)
            XCTAssertEqual(verdict, .acceptModified)
            XCTAssertEqual(bytes, expected(data, destination: proxy))

            XCTAssertEqual(engine.table.lookup(proto: .tcp, client: client, local: proxy, now: 100), .redirected(original: server))
            XCTAssertEqual(engine.counters.rewrittenOriginal.load, 2)
            XCTAssertEqual(engine.counters.rewrittenReply.load, 1)
        }
    }

    func testUDPIsRedirectedAndItsAnswerComesFromTheOriginalAddress() {
        let engine = makeEngine()
        let client = endpoint("192.0.2.2", 5000)
        let server = endpoint("203.0.113.10", 53)
        let relay = endpoint("192.0.2.1", 5353)
        var query = WireTestPacket(proto: .udp, source: client, destination: server)
        query.payload = [0xab, 0xcd, 1, 0]
        XCTAssertEqual(run(engine, query, fromNetwork).1, expected(query, destination: relay))
        var answer = WireTestPacket(proto: .udp, source: relay, destination: client)
        answer.payload = [0xab, 0xcd, 0x81, 0x80]
        let (verdict, bytes) = run(engine, answer, reply)
        XCTAssertEqual(verdict, .acceptModified)
        XCTAssertEqual(bytes, expected(answer, source: server))
    }

    func testAnIPv4UDPDatagramWithoutChecksumKeepsNone() {
        let engine = makeEngine()
        var query = WireTestPacket(proto: .udp, source: endpoint("192.0.2.2", 5000), destination: endpoint("203.0.113.10", 53))
        query.udpChecksumNone = true
        let (verdict, bytes) = run(engine, query, fromNetwork)
        XCTAssertEqual(verdict, .acceptModified)
        XCTAssertEqual(bytes, expected(query, destination: endpoint("192.0.2.1", 5353)))
        XCTAssertEqual(bytes[26], 0)
        XCTAssertEqual(bytes[27], 0)
    }

    func testLocalConnectionsGoToLoopback() {
        let engine = makeEngine()
        let syn4 = WireTestPacket(proto: .tcp, source: endpoint("198.51.100.1", 41000), destination: endpoint("203.0.113.10", 9000), tcpFlags: [.syn])
        XCTAssertEqual(run(engine, syn4, fromLocal).1, expected(syn4, destination: endpoint("127.0.0.1", 8090)))
        let syn6 = WireTestPacket(
            proto: .tcp, source: endpoint("2001:db8:2::1", 41000), destination: endpoint("2001:db8:3::10", 9000), tcpFlags: [.syn])
        XCTAssertEqual(run(engine, syn6, fromLocal).1, expected(syn6, destination: endpoint("::1", 8090)))
    }

    func testALocalHandshakeAnnouncesAnMSSWhoseSegmentsWeCanRewrite() {
        // Loopback's MTU (65536) makes 65536-byte segments, more than NFQUEUE copies (65531).
        let engine = makeEngine()
        let client = endpoint("127.0.0.1", 41000)
        let server = endpoint("127.0.0.2", 9000)
        let proxy = endpoint("127.0.0.1", 8090)
        let loopbackMSS: [UInt8] = [2, 4, 0xff, 0xcb]  // 65483
        let clamped: [UInt8] = [2, 4, UInt8(ParsedPacket.maximumRewritableMSS >> 8), UInt8(ParsedPacket.maximumRewritableMSS & 0xff)]
        var syn = WireTestPacket(proto: .tcp, source: client, destination: server, tcpFlags: [.syn])
        syn.tcpOptions = loopbackMSS
        var expectedSyn = syn
        expectedSyn.tcpOptions = clamped
        XCTAssertEqual(run(engine, syn, fromLocal).1, expected(expectedSyn, destination: proxy))
        var synAck = WireTestPacket(proto: .tcp, source: proxy, destination: client, tcpFlags: [.syn, .ack])
        synAck.tcpOptions = loopbackMSS
        var expectedSynAck = synAck
        expectedSynAck.tcpOptions = clamped
        XCTAssertEqual(run(engine, synAck, reply).1, expected(expectedSynAck, source: server))
    }

    func testWhatIsNotOursPassesByteForByte() {
        let engine = makeEngine()
        let unmatched = WireTestPacket(proto: .tcp, source: endpoint("192.0.2.2", 40000), destination: endpoint("203.0.113.10", 22), tcpFlags: [.syn])
        let midstream = WireTestPacket(proto: .tcp, source: endpoint("192.0.2.2", 40001), destination: endpoint("203.0.113.10", 80), tcpFlags: [.ack])
        let strayReply = WireTestPacket(proto: .tcp, source: endpoint("192.0.2.1", 8080), destination: endpoint("192.0.2.77", 1234), tcpFlags: [.ack])
        for (packet, metadata, what) in [
            (unmatched, fromNetwork, "a port no rule names"),
            (midstream, fromNetwork, "a TCP packet without SYN of a flow never seen (the kernel's REDIRECT would not start it either)"),
            (strayReply, reply, "a reply of no tracked flow"),
        ] {
            let (verdict, bytes) = run(engine, packet, metadata)
            XCTAssertEqual(verdict, .accept, what)
            XCTAssertEqual(bytes, packet.bytes, what)
        }
        XCTAssertEqual(engine.counters.rewrittenOriginal.load + engine.counters.rewrittenReply.load, 0)
        XCTAssertEqual(engine.counters.untracked.load, 3, "not ours by policy, the mid-stream packet, the stray reply")
    }

    func testADirectConnectionToTheProxyIsTrackedNotRedirected() {
        let engine = makeEngine()
        let client = endpoint("192.0.2.2", 40000)
        let proxy = endpoint("192.0.2.1", 8080)
        let syn = WireTestPacket(proto: .tcp, source: client, destination: proxy, tcpFlags: [.syn])
        let (verdict, bytes) = run(engine, syn, fromNetwork)
        XCTAssertEqual(verdict, .accept)
        XCTAssertEqual(bytes, syn.bytes)
        XCTAssertEqual(engine.table.lookup(proto: .tcp, client: client, local: proxy, now: 100), .notRedirected)
    }

    func testNoAddressOnTheIncomingInterfaceIsACountedDropLikeTheKernels() {
        let engine = makeEngine()
        let syn = WireTestPacket(proto: .tcp, source: endpoint("192.0.2.2", 40000), destination: endpoint("203.0.113.10", 80), tcpFlags: [.syn])
        let elsewhere = PacketMetadata(hook: .preRouting, direction: .original, inputInterface: 9)
        XCTAssertEqual(run(engine, syn, elsewhere).0, .drop)
        XCTAssertEqual(engine.counters.noRedirectAddress.load, 1)
        XCTAssertEqual(engine.counters.dropped.load, 1)
    }

    func testBadPacketsAreCountedByReasonAndNeverRewritten() {
        let engine = makeEngine()
        var lying = WireTestPacket(proto: .tcp, source: endpoint("192.0.2.2", 40000), destination: endpoint("203.0.113.10", 80), tcpFlags: [.syn])
            .bytes
        let truncated = Array(lying.prefix(30))
        lying[0] = 0x4f  // IHL says 60 bytes of header
        for (index, original) in [truncated, lying].enumerated() {
            var bytes = original
            let verdict = bytes.withUnsafeMutableBytes { engine.process($0, metadata: fromNetwork, rules: rules, now: 100) }
            XCTAssertNotEqual(verdict, .acceptModified, "case \(index)")
            XCTAssertEqual(bytes, original, "case \(index)")
        }
        let counted = engine.counters.packetErrors.reduce(0) { $0 + $1.load }
        XCTAssertEqual(counted, 2)
        XCTAssertEqual(engine.counters.packets.load, 2)
    }

    func testAFullTableRefusesNewFlowsButKeepsEstablishedOnes() {
        let engine = makeEngine(limit: 1024)
        let server = endpoint("203.0.113.10", 80)
        let proxy = endpoint("192.0.2.1", 8080)
        // Fill the table with established flows (nothing evictable).
        for i in 0..<1024 {
            let client = Endpoint(IPAddress(ipv4: 0xC000_0200 | UInt32(i >> 8)), UInt16(30000 + (i & 0xff)))
            _ = run(engine, WireTestPacket(proto: .tcp, source: client, destination: server, tcpFlags: [.syn]), fromNetwork)
            _ = run(engine, WireTestPacket(proto: .tcp, source: proxy, destination: client, tcpFlags: [.syn, .ack]), reply)
            _ = run(engine, WireTestPacket(proto: .tcp, source: client, destination: server, tcpFlags: [.ack]), fromNetwork)
        }
        let newcomer = WireTestPacket(proto: .tcp, source: endpoint("192.0.2.250", 50000), destination: server, tcpFlags: [.syn])
        XCTAssertEqual(run(engine, newcomer, fromNetwork).0, .drop)
        XCTAssertEqual(engine.counters.refusedTableFull.load, 1)
        let first = Endpoint(IPAddress(ipv4: 0xC000_0200), 30000)
        let data = WireTestPacket(proto: .tcp, source: first, destination: server, tcpFlags: [.ack, .psh])
        XCTAssertEqual(run(engine, data, fromNetwork).0, .acceptModified, "an established flow keeps working")
    }

    func testAClientPortRedirectedTwiceToOneTargetIsDroppedAsTupleInUse() {
        let engine = makeEngine(limit: 1024)
        let client = endpoint("192.0.2.2", 40000)
        let first = WireTestPacket(proto: .tcp, source: client, destination: endpoint("203.0.113.10", 80), tcpFlags: [.syn])
        let second = WireTestPacket(proto: .tcp, source: client, destination: endpoint("203.0.113.11", 80), tcpFlags: [.syn])
        XCTAssertEqual(run(engine, first, fromNetwork).0, .acceptModified)
        XCTAssertEqual(run(engine, second, fromNetwork).0, .drop, "both would become client -> proxy:8080")
        XCTAssertEqual(engine.counters.refusedTupleInUse.load, 1)
        XCTAssertEqual(engine.counters.refusedTableFull.load, 0, "not counted as a full table")
    }
}
