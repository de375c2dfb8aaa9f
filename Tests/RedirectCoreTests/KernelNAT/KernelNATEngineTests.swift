import RedirectCore
import XCTest

/// Kernel-nat mode's first-packet decision: a redirected flow's first packet is accepted
/// unchanged with its port's mark, entered in the table under the same tuples the userspace
/// mode uses (so lookups answer the same), and everything not ours passes unmarked.
final class KernelNATEngineTests: XCTestCase {
    private static let routerInterface: UInt32 = 2
    private static let redirects = [
        try! RedirectRule(parsing: "tcp:80,443:8080", scope: .network),
        try! RedirectRule(parsing: "udp:53:5353", scope: .network),
        try! RedirectRule(parsing: "tcp:9000:8090", scope: .local),
    ]
    private let marks = KernelNATMarks(mask: 0x0ff0_0000, ports: redirects.map(\.toPort))!
    private lazy var rules = DatapathRules(
        policy: RedirectPolicy(rules: Self.redirects),
        addresses: RedirectAddressBook([
            InterfaceAddress(interfaceIndex: Self.routerInterface, address: IPAddress("192.0.2.1")!, prefixLength: 24),
            InterfaceAddress(interfaceIndex: Self.routerInterface, address: IPAddress("2001:db8:1::1")!, prefixLength: 64),
        ]), kernelNAT: marks)
    private let fromNetwork = PacketMetadata(hook: .preRouting, direction: .original, inputInterface: routerInterface)
    private let fromLocal = PacketMetadata(hook: .localOut, direction: .original)

    private func endpoint(_ text: String, _ port: UInt16) -> Endpoint { Endpoint(IPAddress(text)!, port) }

    private func makeEngine() -> RedirectEngine {
        RedirectEngine(table: try! FlowTable(configuration: FlowTableConfiguration(limit: 1024, shardCount: 1, seed: 3)))
    }

    private func run(_ engine: RedirectEngine, _ packet: WireTestPacket, _ metadata: PacketMetadata) -> (Verdict, UInt32, [UInt8]) {
        var bytes = packet.bytes
        var mark: UInt32 = 0
        let verdict = bytes.withUnsafeMutableBytes { engine.process($0, metadata: metadata, rules: rules, now: 100, mark: &mark) }
        return (verdict, mark, bytes)
    }

    func testMarksAreOnePerPortInsideTheMask() {
        XCTAssertEqual(marks.ports, [5353, 8080, 8090])
        XCTAssertEqual(marks.value(for: 5353), 0x0010_0000)
        XCTAssertEqual(marks.value(for: 8080), 0x0020_0000)
        XCTAssertEqual(marks.value(for: 8090), 0x0030_0000)
        XCTAssertNil(marks.value(for: 80))
        XCTAssertEqual(marks.applying(0x0020_0000, to: 0xf00f_0539), 0xf02f_0539, "bits outside the mask are the packet's own")
        XCTAssertEqual(KernelNATMarks.capacity(of: 0x0ff0_0000), 255)
        XCTAssertEqual(KernelNATMarks.capacity(of: 0x8000_0000), 1)
        XCTAssertEqual(KernelNATMarks.capacity(of: 0x0000_0003), 3)
        XCTAssertNil(KernelNATMarks(mask: 0x1, ports: [1, 2]), "one bit tells one port apart")
        XCTAssertNil(KernelNATMarks(mask: 0, ports: [1]))
    }

    func testAFirstPacketIsMarkedNotRewrittenAndTheFlowIsLookedUpAsInUserspaceMode() {
        for (client, server, proxy) in [
            (endpoint("192.0.2.2", 40000), endpoint("203.0.113.10", 80), endpoint("192.0.2.1", 8080)),
            (endpoint("2001:db8:1::2", 40000), endpoint("2001:db8:3::10", 443), endpoint("2001:db8:1::1", 8080)),
        ] {
            let engine = makeEngine()
            let syn = WireTestPacket(proto: .tcp, source: client, destination: server, tcpFlags: [.syn])
            let (verdict, mark, bytes) = run(engine, syn, fromNetwork)
            XCTAssertEqual(verdict, .acceptMarked)
            XCTAssertEqual(mark, 0x0020_0000)
            XCTAssertEqual(bytes, syn.bytes, "the kernel's NAT rewrites it, not the daemon")
            XCTAssertEqual(engine.table.lookup(proto: .tcp, client: client, local: proxy, now: 100), .redirected(original: server))
            XCTAssertEqual(engine.counters.markedOriginal.load, 1)
            XCTAssertEqual(engine.counters.rewrittenOriginal.load, 0)
            // A retransmitted SYN (its conntrack entry not yet confirmed) is marked the same way.
            XCTAssertEqual(run(engine, syn, fromNetwork).0, .acceptMarked)
            XCTAssertEqual(engine.table.count, 1)
        }
    }

    func testLocalUDPAndUnmatchedTraffic() {
        let engine = makeEngine()
        let local = WireTestPacket(proto: .tcp, source: endpoint("127.0.0.1", 41000), destination: endpoint("203.0.113.10", 9000), tcpFlags: [.syn])
        XCTAssertEqual(run(engine, local, fromLocal).1, 0x0030_0000)
        XCTAssertEqual(
            engine.table.lookup(proto: .tcp, client: endpoint("127.0.0.1", 41000), local: endpoint("127.0.0.1", 8090), now: 100),
            .redirected(original: endpoint("203.0.113.10", 9000)))
        var query = WireTestPacket(proto: .udp, source: endpoint("192.0.2.2", 5000), destination: endpoint("203.0.113.10", 53))
        query.payload = [1, 2, 3]
        XCTAssertEqual(run(engine, query, fromNetwork).1, 0x0010_0000)
        let other = WireTestPacket(proto: .tcp, source: endpoint("192.0.2.2", 40001), destination: endpoint("203.0.113.10", 22), tcpFlags: [.syn])
        let (verdict, mark, _) = run(engine, other, fromNetwork)
        XCTAssertEqual(verdict, .accept)
        XCTAssertEqual(mark, 0)
        let direct = WireTestPacket(proto: .tcp, source: endpoint("192.0.2.2", 40002), destination: endpoint("192.0.2.1", 8080), tcpFlags: [.syn])
        XCTAssertEqual(run(engine, direct, fromNetwork).0, .accept, "a client dialling the proxy itself is tracked, not redirected")
        XCTAssertEqual(
            engine.table.lookup(proto: .tcp, client: endpoint("192.0.2.2", 40002), local: endpoint("192.0.2.1", 8080), now: 100), .notRedirected)
    }

    func testNoAddressOnTheInterfaceDropsLikeTheKernel() {
        let engine = makeEngine()
        let syn = WireTestPacket(proto: .tcp, source: endpoint("192.0.2.2", 40000), destination: endpoint("203.0.113.10", 80), tcpFlags: [.syn])
        let (verdict, _, _) = run(engine, syn, PacketMetadata(hook: .preRouting, direction: .original, inputInterface: 9))
        XCTAssertEqual(verdict, .drop)
        XCTAssertEqual(engine.counters.noRedirectAddress.load, 1)
    }
}
