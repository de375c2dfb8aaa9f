import SeededRandom
import XCTest

@testable import RedirectCore

/// Random operation sequences against small tables, checking the structural invariants after
/// every step: both indexes agree with the slab (every flow reachable from both tuples, no
/// dangling entries), count == records, and the size never exceeds the limit.
final class FlowTablePropertyTests: XCTestCase {
    private struct Universe {
        var clients: [Endpoint]
        var servers: [Endpoint]
        var targets: [Endpoint]
    }

    /// A small universe so tuples collide, flows are reused, and reply tuples clash.
    private let world: Universe = {
        func endpoint(_ v6: Bool, _ host: UInt64, _ port: UInt16) -> Endpoint {
            let address = v6 ? IPAddress(high: 0x2001_0db8_0000_0000, low: host) : IPAddress(ipv4: 0x0A00_0000 | UInt32(host))
            return Endpoint(address, port)
        }
        var clients: [Endpoint] = []
        for i in 0..<24 { clients.append(endpoint(i % 3 == 0, UInt64(i % 6 + 10), UInt16(40000 + i % 5))) }
        let serverPorts: [UInt16] = [80, 443, 53]
        var servers: [Endpoint] = []
        for i in 0..<6 { servers.append(endpoint(i % 2 == 0, UInt64(100 + i), serverPorts[i % 3])) }
        var targets: [Endpoint] = []
        for i in 0..<3 { targets.append(endpoint(i == 2, 1, UInt16(8080 + i))) }
        return Universe(clients: clients, servers: servers, targets: targets)
    }()

    private let flagChoices: [TCPFlags] = [.syn, .syn, [.syn, .ack], .ack, [.ack, .psh], [.fin, .ack], .rst, [.rst, .ack], [], [.syn, .fin]]

    func testRandomOperationSequencesKeepTheTableConsistent() {
        var seen = FlowTableStatistics()
        for seed in UInt64(1)...12 {
            var random = SplitMix64(seed: seed)
            let limit = [8, 16, 40][Int(seed % 3)]
            let table = Fixture.table(
                limit: limit,
                timeouts: FlowTimeouts(
                    synSent: 20, synReceived: 10, established: 60, finWait: 20, closeWait: 10, lastAck: 5,
                    timeWait: 20, close: 3, udpUnreplied: 5, udpReplied: 15),
                tombstones: 8, events: 32, seed: seed)
            var now: UInt32 = 1000
            var eventsDrained = 0
            for step in 0..<1500 {
                let client = world.clients[Int(random.next() % UInt64(world.clients.count))]
                let server = world.servers[Int(random.next() % UInt64(world.servers.count))]
                let target = world.targets[Int(random.next() % UInt64(world.targets.count))]
                let proto: TransportProtocol = random.next() % 4 == 0 ? .udp : .tcp
                let flags = flagChoices[Int(random.next() % UInt64(flagChoices.count))]
                let choice = random.next() % 100
                switch choice {
                case 0..<45:
                    let decision: FlowDecision = random.next() % 5 == 0 ? .trackOnly : .redirect(to: target)
                    let outcome = table.handleOriginal(
                        FlowTuple(proto: proto, source: client, destination: server), tcpFlags: flags, length: 100, now: now
                    ) { _ in decision }
                    if case .rewriteDestination(let to) = outcome {
                        // A redirected flow answers lookups with where the client was going,
                        // unless this very packet was a reset that ended it.
                        let answer = table.lookup(proto: proto, client: client, local: to, now: now)
                        let endedByReset = proto == .tcp && flags.contains(.rst) && answer == .expired(.closed)
                        XCTAssertTrue(
                            answer == .redirected(original: server) || endedByReset,
                            "seed \(seed) step \(step): \(answer)")
                    }
                case 45..<80:
                    let source = random.next() % 4 == 0 ? server : target
                    let outcome = table.handleReply(
                        FlowTuple(proto: proto, source: source, destination: client), tcpFlags: flags, length: 100, now: now)
                    if case .rewriteSource(let original) = outcome {
                        XCTAssertNotEqual(original, source, "seed \(seed) step \(step)")
                    }
                case 80..<88:
                    // A whole handshake (and sometimes a whole close), so flows become assured and finish.
                    let tuple = FlowTuple.tcp(client, server)
                    let outcome = table.handleOriginal(tuple, tcpFlags: .syn, length: 60, now: now) { _ in .redirect(to: target) }
                    if case .rewriteDestination(let to) = outcome {
                        let reply = FlowTuple.tcp(to, client)
                        table.reply(reply, [.syn, .ack], now: now)
                        table.original(tuple, .ack, now: now)
                        if random.next() % 2 == 0 {
                            table.original(tuple, [.fin, .ack], now: now)
                            table.reply(reply, [.fin, .ack], now: now)
                            table.original(tuple, .ack, now: now)
                        }
                    }
                case 88..<92:
                    _ = table.lookup(proto: proto, client: client, local: target, now: now)
                case 92..<95:
                    table.sweep(now: now, budget: Int(random.next() % 16))
                case 95..<98:
                    now &+= UInt32(random.next() % 30)
                default:
                    eventsDrained += table.drainEvents().count
                }
                if random.next() % 3 == 0 { now &+= 1 }

                let violations = table.invariantViolations()
                XCTAssertEqual(violations, [], "seed \(seed) step \(step)")
                if !violations.isEmpty { return }
                XCTAssertLessThanOrEqual(table.count, limit)
                let live = table.records(now: 0)  // every stored flow, expired or not
                XCTAssertEqual(live.count, table.count, "seed \(seed) step \(step)")
                XCTAssertEqual(Set(live.map(\.originalTuple)).count, live.count, "original tuples are unique")
                XCTAssertEqual(Set(live.map(\.replyTuple)).count, live.count, "reply tuples are unique")
                let stats = table.statistics
                XCTAssertEqual(stats.byState.values.reduce(0, +), stats.count)
                let destroyed = FlowEndReason.allCases.reduce(UInt64(0)) { $0 + stats.destroyed($1) }
                XCTAssertEqual(stats.created + stats.restored - destroyed, UInt64(stats.count), "seed \(seed) step \(step)")
            }
            let stats = table.statistics
            XCTAssertGreaterThan(stats.created, 50, "seed \(seed) exercised creation")
            seen.destroyedExpired += stats.destroyedExpired
            seen.destroyedClosed += stats.destroyedClosed
            seen.destroyedEvicted += stats.destroyedEvicted
            seen.destroyedReplaced += stats.destroyedReplaced
            seen.refusedTableFull += stats.refusedTableFull
            seen.refusedTupleInUse += stats.refusedTupleInUse
            seen.invalid += stats.invalid
            seen.eventsLost += stats.eventsLost
            XCTAssertGreaterThan(eventsDrained, 0)
        }
        // The sequences reached every path that removes or refuses a flow.
        for (name, value) in [
            ("expired", seen.destroyedExpired), ("closed", seen.destroyedClosed), ("evicted", seen.destroyedEvicted),
            ("replaced", seen.destroyedReplaced), ("table full", seen.refusedTableFull),
            ("tuple in use", seen.refusedTupleInUse), ("invalid", seen.invalid),
        ] {
            XCTAssertGreaterThan(value, 0, name)
        }
    }

    func testSweepEventuallyRemovesEveryExpiredFlow() {
        var random = SplitMix64(seed: 99)
        let table = Fixture.table(limit: 4096, shards: 8)
        for i in 0..<3000 {
            table.original(.udp(Fixture.client(i), Fixture.server), now: UInt32(random.next() % 100))
        }
        XCTAssertEqual(table.count, 3000)
        var removed = 0
        var calls = 0
        while table.count > 0 && calls < 1000 {
            removed += table.sweep(now: 200, budget: 97)
            calls += 1
        }
        XCTAssertEqual(removed, 3000)
        XCTAssertEqual(table.count, 0)
        XCTAssertLessThan(calls, 60, "a sweep pass covers the slabs in about highWater / budget calls")
        XCTAssertEqual(table.invariantViolations(), [])
    }
}
