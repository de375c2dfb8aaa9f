import MallocInterposerSwift
import XCTest

@testable import RedirectCore

/// The per-packet path allocates nothing, counted by an interposed malloc (as swift-nio's
/// allocation tests do): RedirectEngine.process on established flows in both directions and
/// both families, ICMP errors about them translated both ways, and the flow table creating,
/// finding and expiring flows. Any malloc, calloc, realloc or posix_memalign between `hook()`
/// and `unhook()` fails the test.
final class SteadyStateAllocationTests: XCTestCase {
    private static let interfaceIndex: UInt32 = 2
    private static let rules = DatapathRules(
        policy: RedirectPolicy(rules: [
            RedirectRule(scope: .network, proto: .tcp, ports: PortSet([80...80, 443...443]), toPort: 8080),
            RedirectRule(scope: .network, proto: .udp, ports: PortSet([53...53]), toPort: 5353),
        ]),
        addresses: RedirectAddressBook([
            InterfaceAddress(interfaceIndex: interfaceIndex, address: Fixture.proxy.address, prefixLength: 24),
            InterfaceAddress(interfaceIndex: interfaceIndex, address: Fixture.proxy6.address, prefixLength: 64),
        ]))
    private static let original = PacketMetadata(hook: .preRouting, direction: .original, inputInterface: interfaceIndex)
    private static let reply = PacketMetadata(hook: .localOut, direction: .reply)
    private static let rounds = 10_000

    func testEngineProcessAllocatesNothingPerPacket() throws {
        let engine = RedirectEngine(table: try FlowTable(configuration: FlowTableConfiguration(limit: 4096, seed: 1)))
        var steadyState: [(packet: [UInt8], metadata: PacketMetadata)] = []
        for (client, server) in [(Fixture.client, Fixture.server), (Fixture.client6, Fixture.server6)] {
            let proxy = Endpoint(client.address.isIPv4 ? Fixture.proxy.address : Fixture.proxy6.address, 8080)
            let handshake = [
                (WireTestPacket(proto: .tcp, source: client, destination: server, tcpFlags: [.syn]), Self.original),
                (WireTestPacket(proto: .tcp, source: proxy, destination: client, tcpFlags: [.syn, .ack]), Self.reply),
            ]
            for (packet, metadata) in handshake {
                XCTAssertEqual(process(packet.bytes, engine: engine, metadata: metadata), .acceptModified)
            }
            let data = [UInt8](repeating: 0x5a, count: 200)
            steadyState.append((WireTestPacket(proto: .tcp, source: client, destination: server, payload: data).bytes, Self.original))
            steadyState.append((WireTestPacket(proto: .tcp, source: proxy, destination: client, payload: data).bytes, Self.reply))
            // Related traffic: an error about the proxy's reply (to the proxy) and one about the
            // client's packet (to the client), each translated.
            let ipv4 = client.address.isIPv4
            steadyState.append(
                (
                    WireTestICMPError(
                        outerSource: client.address, outerDestination: server.address, type: ipv4 ? 3 : 2, code: ipv4 ? 4 : 0,
                        quoted: WireTestPacket(proto: .tcp, source: server, destination: client, payload: data), quoteLength: 100
                    ).bytes,
                    Self.original
                ))
            steadyState.append(
                (
                    WireTestICMPError(
                        outerSource: proxy.address, outerDestination: client.address, type: ipv4 ? 3 : 1, code: ipv4 ? 3 : 4,
                        quoted: WireTestPacket(proto: .tcp, source: client, destination: proxy, payload: data)
                    ).bytes,
                    Self.reply
                ))
        }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 2048, alignment: 16)
        defer { buffer.deallocate() }

        let mallocs = countMallocs { _ in
            // Plain index loops: a debug build boxes the elements of a generic tuple iterator.
            for _ in 0..<Self.rounds {
                for index in 0..<steadyState.count {
                    let length = steadyState[index].packet.count
                    steadyState[index].packet.withUnsafeBytes { buffer.copyMemory(from: $0) }
                    let bytes = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<length])
                    guard engine.process(bytes, metadata: steadyState[index].metadata, rules: Self.rules, now: 2) == .acceptModified else {
                        return false
                    }
                }
            }
            return true
        }
        XCTAssertEqual(mallocs.result, true, "a steady-state packet was not rewritten")
        XCTAssertEqual(mallocs.count, 0, "mallocs in \(Self.rounds * steadyState.count) steady-state packets")
    }

    func testFlowTableCreateFindExpireAllocatesNothing() throws {
        let table = try FlowTable(configuration: FlowTableConfiguration(limit: 1 << 16, seed: 2))
        let flows = 10_000
        let mallocs = countMallocs { pass in
            // Each pass starts 1000 s after the previous one: its flows are new, the old ones gone.
            let start = 1 + pass * 1000
            var redirected = 0
            for i in 0..<flows {
                if case .rewriteDestination = table.original(.udp(Fixture.client(i), Fixture.server), now: start) { redirected += 1 }
            }
            for i in 0..<flows {
                if case .redirected = table.lookup(proto: .udp, client: Fixture.client(i), local: Fixture.proxy, now: start + 1) {
                    redirected += 1
                }
            }
            // Past the unreplied UDP timeout: a packet of each flow meets it expired, and the sweep
            // goes over the whole table.
            let later = start + FlowTimeouts().udpUnreplied + 1
            for i in 0..<flows / 2 { _ = table.handleReply(.udp(Fixture.proxy, Fixture.client(i)), tcpFlags: [], length: 60, now: later) }
            let swept = table.sweep(now: later, budget: 1 << 20)
            return redirected == 2 * flows && swept == flows - flows / 2 && table.count == 0
        }
        XCTAssertEqual(mallocs.result, true, "the table did not create, find and expire every flow")
        XCTAssertEqual(mallocs.count, 0, "mallocs while creating, finding and expiring \(flows) flows")
    }

    private func process(_ packet: [UInt8], engine: RedirectEngine, metadata: PacketMetadata) -> Verdict {
        var copy = packet
        return copy.withUnsafeMutableBytes { engine.process($0, metadata: metadata, rules: Self.rules, now: 1) }
    }

    /// Runs `body` once to warm up (the runtime instantiates witness tables and metadata on
    /// first use), then again with the malloc counter on; returns that run's result and mallocs.
    /// `body` gets the pass number (0 warm-up, 1 counted).
    private func countMallocs<Result>(_ body: (_ pass: UInt32) -> Result) -> (result: Result, count: Int) {
        _ = body(0)
        MallocInterposerSwift.reset()
        MallocInterposerSwift.hook()
        let result = body(1)
        MallocInterposerSwift.unhook()
        return (result, MallocInterposerSwift.getStatistics().mallocCount)
    }
}
