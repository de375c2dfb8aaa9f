import RedirectCore

/// A flow table holding `size` established TCP flows (client i -> 198.51.100.1:80, redirected
/// to 192.0.2.1:8080), as a proxy host with that many open connections has. Built the way
/// the datapath builds flows: SYN, the proxy's SYN-ACK, the client's ACK.
///
/// Timeouts: established flows live 5 days, unreplied UDP 30 s, so benchmarks can create UDP
/// flows, let virtual time pass and see them expire while the established ones stay.
final class PopulatedTable {
    static let server = Endpoint(IPAddress(ipv4: 0xc633_6401), 80)
    static let proxy = Endpoint(IPAddress(ipv4: 0xc000_0201), 8080)
    static let udpTimeout: UInt32 = 30

    let size: Int
    let table: FlowTable
    /// Virtual seconds; only moves forward.
    var now: UInt32 = 1
    private var random: UInt64 = 0x9e37_79b9_7f4a_7c15

    /// `headroom` extra flows fit beyond `size` without eviction.
    init(size: Int, headroom: Int = 4096) throws {
        self.size = size
        table = try FlowTable(configuration: FlowTableConfiguration(limit: size + headroom, seed: 7))
        for index in 0..<size {
            let client = Self.client(index)
            let original = FlowTuple(proto: .tcp, source: client, destination: Self.server)
            let reply = FlowTuple(proto: .tcp, source: Self.proxy, destination: client)
            _ = table.handleOriginal(original, tcpFlags: [.syn], length: 60, now: now) { _ in .redirect(to: Self.proxy) }
            _ = table.handleReply(reply, tcpFlags: [.syn, .ack], length: 60, now: now)
            _ = table.handleOriginal(original, tcpFlags: [.ack], length: 52, now: now) { _ in .redirect(to: Self.proxy) }
        }
        precondition(table.count == size, "the table refused flows while being filled")
    }

    /// Client `index`: 10.x.y.z, 50,000 ports per address.
    static func client(_ index: Int) -> Endpoint {
        Endpoint(IPAddress(ipv4: 0x0a00_0000 &+ UInt32(index / 50_000)), UInt16(10_000 + index % 50_000))
    }

    /// A uniformly drawn index of the first `bound` tracked flows (xorshift; no allocation).
    @inline(__always)
    func randomIndex(below bound: Int) -> Int {
        random ^= random << 13
        random ^= random >> 7
        random ^= random << 17
        return Int(truncatingIfNeeded: random % UInt64(min(bound, size)))
    }

    /// Sets up UDP flows from clients `size ..< size + count` (not part of the population).
    func createUDPFlows(_ count: Int) {
        for index in size..<(size + count) {
            let tuple = FlowTuple(proto: .udp, source: Self.client(index), destination: Self.server)
            _ = table.handleOriginal(tuple, tcpFlags: [], length: 100, now: now) { _ in .redirect(to: Self.proxy) }
        }
    }

    /// Lets the UDP flows expire, then meets each with a packet: the lazy expiry removes it
    /// and the policy (here: ignore) is not asked to create a new one.
    func expireUDPFlows(_ count: Int) {
        now &+= Self.udpTimeout + 1
        for index in size..<(size + count) {
            let tuple = FlowTuple(proto: .udp, source: Self.client(index), destination: Self.server)
            _ = table.handleOriginal(tuple, tcpFlags: [], length: 100, now: now) { _ in .ignore }
        }
    }
}
