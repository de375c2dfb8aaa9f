@testable import RedirectCore

enum Fixture {
    static let client = Endpoint(IPAddress(ipv4: 0x0A00_0002), 40000)  // 10.0.0.2:40000
    static let server = Endpoint(IPAddress(ipv4: 0x5DB8_D822), 80)  // 93.184.216.34:80
    static let proxy = Endpoint(IPAddress(ipv4: 0x0A00_0001), 8080)  // 10.0.0.1:8080
    static let client6 = Endpoint(IPAddress(high: 0x2001_0db8_0000_0000, low: 2), 51000)
    static let server6 = Endpoint(IPAddress(high: 0x2001_0db8_ffff_0000, low: 0x80), 443)
    static let proxy6 = Endpoint(IPAddress(high: 0x2001_0db8_0000_0000, low: 1), 8443)

    /// The i-th distinct IPv4 client endpoint.
    static func client(_ i: Int) -> Endpoint {
        Endpoint(IPAddress(ipv4: 0x0A00_0000 | UInt32(truncatingIfNeeded: i >> 16) & 0xFF_FFFF), UInt16(truncatingIfNeeded: i))
    }

    static func table(
        limit: Int = 1024, shards: Int = 1, timeouts: FlowTimeouts = FlowTimeouts(),
        tombstones: Int = 64, events: Int = 0, seed: UInt64 = 42
    ) -> FlowTable {
        try! FlowTable(
            configuration: FlowTableConfiguration(
                limit: limit, shardCount: shards, timeouts: timeouts, seed: seed,
                tombstoneCapacity: tombstones, eventCapacity: events))
    }
}

extension FlowTuple {
    static func tcp(_ source: Endpoint, _ destination: Endpoint) -> FlowTuple {
        FlowTuple(proto: .tcp, source: source, destination: destination)
    }

    static func udp(_ source: Endpoint, _ destination: Endpoint) -> FlowTuple {
        FlowTuple(proto: .udp, source: source, destination: destination)
    }
}

extension FlowTable {
    /// An original packet whose flow, if new, is redirected to `target`.
    @discardableResult
    func original(
        _ tuple: FlowTuple, _ flags: TCPFlags = [], length: Int = 60, now: UInt32, redirectTo target: Endpoint? = Fixture.proxy
    ) -> OriginalOutcome {
        handleOriginal(tuple, tcpFlags: flags, length: length, now: now) { _ in
            target.map { .redirect(to: $0) } ?? .trackOnly
        }
    }

    /// The only record for `client`, if any.
    func record(of client: Endpoint, now: UInt32) -> FlowRecord? {
        records(now: now).first { $0.client == client }
    }
}

extension FlowTable {
    /// A reply-direction packet whose outcome the test does not need.
    @discardableResult
    func reply(_ tuple: FlowTuple, _ flags: TCPFlags = [], length: Int = 60, now: UInt32) -> ReplyOutcome {
        handleReply(tuple, tcpFlags: flags, length: length, now: now)
    }
}
