import XCTest

@testable import RedirectCore

final class FlowLookupTests: XCTestCase {
    func testRedirectedFlowAnswersItsOriginalDestination() {
        let table = Fixture.table()
        table.original(.tcp(Fixture.client6, Fixture.server6), .syn, now: 1, redirectTo: Fixture.proxy6)
        XCTAssertEqual(
            table.lookup(proto: .tcp, client: Fixture.client6, local: Fixture.proxy6, now: 2),
            .redirected(original: Fixture.server6))
        XCTAssertEqual(
            table.handleReply(.tcp(Fixture.proxy6, Fixture.client6), tcpFlags: [.syn, .ack], length: 80, now: 2),
            .rewriteSource(Fixture.server6))
    }

    func testTrackOnlyFlowAnswersNotRedirected() {
        let table = Fixture.table()
        // A client that dialled the proxy port directly.
        XCTAssertEqual(table.original(.tcp(Fixture.client, Fixture.proxy), .syn, now: 1, redirectTo: nil), .pass)
        XCTAssertEqual(table.lookup(proto: .tcp, client: Fixture.client, local: Fixture.proxy, now: 1), .notRedirected)
        XCTAssertEqual(table.handleReply(.tcp(Fixture.proxy, Fixture.client), tcpFlags: [.syn, .ack], length: 60, now: 1), .pass)
        XCTAssertEqual(table.original(.tcp(Fixture.client, Fixture.proxy), .ack, now: 1, redirectTo: nil), .pass)
        XCTAssertEqual(table.record(of: Fixture.client, now: 1)?.redirectTarget, nil)
    }

    func testUnknownTupleIsNotFound() {
        let table = Fixture.table()
        table.original(.tcp(Fixture.client, Fixture.server), .syn, now: 1)
        XCTAssertEqual(table.lookup(proto: .tcp, client: Fixture.client, local: Fixture.server, now: 1), .notFound)
        XCTAssertEqual(table.lookup(proto: .tcp, client: Fixture.client(7), local: Fixture.proxy, now: 1), .notFound)
        XCTAssertEqual(table.lookup(proto: .udp, client: Fixture.client, local: Fixture.proxy, now: 1), .notFound)
    }

    func testEndedFlowsAreRememberedAsExpiredWithTheirReason() {
        let table = Fixture.table(tombstones: 2)
        let first = Fixture.client(1)
        let second = Fixture.client(2)
        let third = Fixture.client(3)
        table.original(.tcp(first, Fixture.server), .syn, now: 1)
        table.original(.tcp(first, Fixture.server), .rst, now: 2)  // reset before a reply: closed at once
        XCTAssertEqual(table.lookup(proto: .tcp, client: first, local: Fixture.proxy, now: 2), .expired(.closed))

        table.original(.udp(second, Fixture.server), now: 2)
        XCTAssertEqual(table.sweep(now: 40, budget: 100), 1)
        XCTAssertEqual(table.lookup(proto: .udp, client: second, local: Fixture.proxy, now: 40), .expired(.expired))

        // Fixed capacity: the oldest memory is overwritten.
        table.original(.udp(third, Fixture.server), now: 40)
        XCTAssertEqual(table.sweep(now: 80, budget: 100), 1)
        XCTAssertEqual(table.lookup(proto: .tcp, client: first, local: Fixture.proxy, now: 80), .notFound)
        XCTAssertEqual(table.lookup(proto: .udp, client: third, local: Fixture.proxy, now: 80), .expired(.expired))
    }

    func testLookupRemovesAnExpiredFlowLazily() {
        let table = Fixture.table()
        table.original(.udp(Fixture.client, Fixture.server), now: 1)
        XCTAssertEqual(table.count, 1)
        XCTAssertEqual(table.lookup(proto: .udp, client: Fixture.client, local: Fixture.proxy, now: 31), .expired(.expired))
        XCTAssertEqual(table.count, 0)
        XCTAssertEqual(table.lookup(proto: .udp, client: Fixture.client, local: Fixture.proxy, now: 31), .expired(.expired))
    }

    func testSameClientToTwoDestinationsRedirectedToOneTargetIsRefused() {
        // Both flows would have the reply tuple proxy -> client: replies could not be told apart.
        let table = Fixture.table()
        let elsewhere = Endpoint(IPAddress(ipv4: 0x0101_0101), 80)
        table.original(.tcp(Fixture.client, Fixture.server), .syn, now: 1)
        XCTAssertEqual(table.original(.tcp(Fixture.client, elsewhere), .syn, now: 1), .refused(.tupleInUse))
        XCTAssertEqual(table.statistics.refusedTupleInUse, 1)
        // Once the first connection has finished, its tuple may be reused.
        table.original(.tcp(Fixture.client, Fixture.server), .rst, now: 2)
        XCTAssertEqual(table.original(.tcp(Fixture.client, elsewhere), .syn, now: 2), .rewriteDestination(Fixture.proxy))
        XCTAssertEqual(
            table.lookup(proto: .tcp, client: Fixture.client, local: Fixture.proxy, now: 2),
            .redirected(original: elsewhere))
        XCTAssertEqual(table.invariantViolations(), [])
    }

    func testPolicyIgnoreCreatesNothing() {
        let table = Fixture.table()
        var asked = 0
        let outcome = table.handleOriginal(.udp(Fixture.client, Fixture.server), tcpFlags: [], length: 10, now: 1) { _ in
            asked += 1
            return .ignore
        }
        XCTAssertEqual(outcome, .untracked)
        XCTAssertEqual(asked, 1)
        XCTAssertEqual(table.count, 0)
        XCTAssertEqual(table.statistics.ignoredByPolicy, 1)
    }

    func testDecideIsOnlyAskedForNewFlows() {
        let table = Fixture.table()
        var asked = 0
        let decide: (FlowTuple) -> FlowDecision = { _ in
            asked += 1
            return .redirect(to: Fixture.proxy)
        }
        let tuple = FlowTuple.tcp(Fixture.client, Fixture.server)
        _ = table.handleOriginal(tuple, tcpFlags: .ack, length: 60, now: 1, decide: decide)
        _ = table.handleOriginal(tuple, tcpFlags: .syn, length: 60, now: 1, decide: decide)
        _ = table.handleOriginal(tuple, tcpFlags: .syn, length: 60, now: 2, decide: decide)
        _ = table.handleOriginal(tuple, tcpFlags: .ack, length: 60, now: 3, decide: decide)
        XCTAssertEqual(asked, 1)
    }

    func testEventsReportNewAndDestroyedFlowsInOrder() {
        let table = Fixture.table(limit: 4096, shards: 4, events: 64)
        XCTAssertEqual(table.shardCount, 4)
        for i in 0..<10 { table.original(.udp(Fixture.client(i), Fixture.server), now: UInt32(i)) }
        table.sweep(now: 45, budget: 10_000)
        let events = table.drainEvents()
        XCTAssertEqual(events.count, 20)
        XCTAssertEqual(events.filter { $0.kind == .created }.map(\.time), Array(0..<10))
        XCTAssertTrue(events.allSatisfy { $0.kind == .created || ($0.kind == .destroyed(.expired) && $0.time == 45) })
        XCTAssertEqual(events.filter { $0.kind == .created }.map(\.record.client), (0..<10).map(Fixture.client))
        XCTAssertEqual(table.drainEvents(), [])
    }

    func testEventRingKeepsTheNewestAndCountsTheLost() {
        let table = Fixture.table(events: 4)
        for i in 0..<10 { table.original(.udp(Fixture.client(i), Fixture.server), now: 1) }
        let events = table.drainEvents()
        XCTAssertEqual(events.map(\.record.client), (6..<10).map(Fixture.client))
        XCTAssertEqual(table.statistics.eventsLost, 6)
    }
}
