import RedirectCore

/// A `RedirectEngine` with the bench's redirect rules (tcp:80 -> 8080, udp:4000 -> 4001 from
/// the network), one established flow per address family, and the packets of its steady
/// state: the client's data segment (original) and the proxy's answer (reply).
final class EngineFixture {
    static let inputInterface: UInt32 = 2
    static let routerV4 = IPAddress("192.0.2.1")!
    static let routerV6 = IPAddress("2001:db8::1")!

    let engine: RedirectEngine
    let rules: DatapathRules
    let original: BenchmarkPacket
    let reply: BenchmarkPacket
    let originalMetadata = PacketMetadata(hook: .preRouting, direction: .original, inputInterface: inputInterface)
    let replyMetadata = PacketMetadata(hook: .localOut, direction: .reply)
    let now: UInt32 = 1

    init(family: AddressFamily, table: FlowTable) {
        engine = RedirectEngine(table: table)
        rules = DatapathRules(
            policy: RedirectPolicy(rules: [
                RedirectRule(scope: .network, proto: .tcp, ports: PortSet([80...80]), toPort: 8080),
                RedirectRule(scope: .network, proto: .udp, ports: PortSet([4000...4000]), toPort: 4001),
            ]),
            addresses: RedirectAddressBook([
                InterfaceAddress(interfaceIndex: Self.inputInterface, address: Self.routerV4, prefixLength: 24),
                InterfaceAddress(interfaceIndex: Self.inputInterface, address: Self.routerV6, prefixLength: 64),
            ]))
        let client = Endpoint(family == .ipv4 ? IPAddress("192.0.2.10")! : IPAddress("2001:db8::10")!, 40_000)
        let server = Endpoint(family == .ipv4 ? IPAddress("198.51.100.1")! : IPAddress("2001:db8:1::1")!, 80)
        let proxy = Endpoint(family == .ipv4 ? Self.routerV4 : Self.routerV6, 8080)

        let syn = BenchmarkPacket(proto: .tcp, source: client, destination: server, tcpFlags: [.syn], payloadLength: 0)
        let synAck = BenchmarkPacket(proto: .tcp, source: proxy, destination: client, tcpFlags: [.syn, .ack], payloadLength: 0)
        original = BenchmarkPacket(proto: .tcp, source: client, destination: server, tcpFlags: [.ack, .psh], payloadLength: 100)
        reply = BenchmarkPacket(proto: .tcp, source: proxy, destination: client, tcpFlags: [.ack, .psh], payloadLength: 100)
        let handshake = [
            engine.process(syn.bytes, metadata: originalMetadata, rules: rules, now: now),
            engine.process(synAck.bytes, metadata: replyMetadata, rules: rules, now: now),
            processOriginal(),
            processReply(),
        ]
        precondition(handshake.allSatisfy { $0 == .acceptModified }, "the fixture flow is not redirected: \(handshake)")
    }

    /// The client's next data segment, as the kernel hands it over, through the engine.
    @inline(__always)
    func processOriginal() -> Verdict {
        original.restore()
        return engine.process(original.bytes, metadata: originalMetadata, rules: rules, now: now)
    }

    /// The proxy's next answer through the engine.
    @inline(__always)
    func processReply() -> Verdict {
        reply.restore()
        return engine.process(reply.bytes, metadata: replyMetadata, rules: rules, now: now)
    }
}
