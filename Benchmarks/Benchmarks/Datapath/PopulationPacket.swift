import RedirectCore

/// A data segment from a uniformly drawn client among the first `flows` of a
/// `PopulatedTable`, through the engine: the per-packet cost with the table at its size
/// (with every flow busy: cache and TLB misses included; with a few busy: what a table of
/// mostly idle flows costs).
///
/// The client's address and port are patched into a template, so the TCP checksum is not the
/// packet's true one; the engine only updates it incrementally, so the cost is the same.
final class PopulationPacket {
    let population: PopulatedTable
    let engine: RedirectEngine
    let packet: BenchmarkPacket
    let rules = DatapathRules(
        policy: RedirectPolicy(rules: [RedirectRule(scope: .network, proto: .tcp, ports: PortSet([80...80]), toPort: 8080)]),
        addresses: RedirectAddressBook([
            InterfaceAddress(interfaceIndex: 2, address: PopulatedTable.proxy.address, prefixLength: 24)
        ]))
    let metadata = PacketMetadata(hook: .preRouting, direction: .original, inputInterface: 2)

    init(population: PopulatedTable) {
        self.population = population
        engine = RedirectEngine(table: population.table)
        packet = BenchmarkPacket(
            proto: .tcp, source: PopulatedTable.client(0), destination: PopulatedTable.server, tcpFlags: [.ack], payloadLength: 100)
    }

    @inline(__always)
    func processRandomFlow(among flows: Int) -> Verdict {
        let client = PopulatedTable.client(population.randomIndex(below: flows))
        packet.restore()
        client.address.write(to: packet.bytes, at: 12)
        packet.bytes.storeBigEndian(client.port, at: 20)
        return engine.process(packet.bytes, metadata: metadata, rules: rules, now: population.now)
    }
}
