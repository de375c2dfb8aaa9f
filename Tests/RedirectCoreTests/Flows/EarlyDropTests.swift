import XCTest

@testable import RedirectCore

final class EarlyDropTests: XCTestCase {
    private let limit = 64

    private func establish(_ table: FlowTable, _ client: Endpoint, now: UInt32) {
        table.original(.tcp(client, Fixture.server), .syn, now: now)
        table.reply(.tcp(Fixture.proxy, client), [.syn, .ack], length: 60, now: now)
        table.original(.tcp(client, Fixture.server), .ack, now: now)
    }

    func testANewFlowEvictsOneThatIsNotAssured() {
        let table = Fixture.table(limit: limit)
        for i in 0..<limit {
            if i % 2 == 0 {
                establish(table, Fixture.client(i), now: 1)
            } else {
                table.original(.tcp(Fixture.client(i), Fixture.server), .syn, now: 1)
            }
        }
        XCTAssertEqual(table.count, limit)

        let newcomer = Fixture.client(1000)
        XCTAssertEqual(table.original(.tcp(newcomer, Fixture.server), .syn, now: 2), .rewriteDestination(Fixture.proxy))
        XCTAssertEqual(table.count, limit)
        let stats = table.statistics
        XCTAssertEqual(stats.destroyedEvicted, 1)
        XCTAssertEqual(stats.refusedTableFull, 0)
        // Every established flow survived; one SYN_SENT flow made room.
        XCTAssertEqual(stats.byState, [.established: limit / 2, .synSent: limit / 2])
        for i in stride(from: 0, to: limit, by: 2) {
            XCTAssertEqual(
                table.lookup(proto: .tcp, client: Fixture.client(i), local: Fixture.proxy, now: 2),
                .redirected(original: Fixture.server))
        }
        XCTAssertEqual(table.invariantViolations(), [])
    }

    /// The scan is bounded (32 slots here): when it meets only assured flows the new flow is
    /// refused, but the cursor moves on, so a later attempt looks at other candidates.
    func testTheEvictionScanIsBoundedAndRotates() {
        let table = Fixture.table(limit: limit)
        for i in 0..<limit / 2 { establish(table, Fixture.client(i), now: 1) }
        for i in limit / 2..<limit { table.original(.tcp(Fixture.client(i), Fixture.server), .syn, now: 1) }
        XCTAssertEqual(table.original(.tcp(Fixture.client(1000), Fixture.server), .syn, now: 2), .refused(.tableFull))
        XCTAssertEqual(table.original(.tcp(Fixture.client(1000), Fixture.server), .syn, now: 3), .rewriteDestination(Fixture.proxy))
        XCTAssertEqual(table.lookup(proto: .tcp, client: Fixture.client(limit / 2), local: Fixture.proxy, now: 3), .expired(.evicted))
        XCTAssertEqual(table.statistics.refusedTableFull, 1)
        XCTAssertEqual(table.statistics.destroyedEvicted, 1)
    }

    func testWithOnlyAssuredFlowsTheNewFlowIsRefused() {
        let table = Fixture.table(limit: limit)
        for i in 0..<limit { establish(table, Fixture.client(i), now: 1) }
        XCTAssertEqual(table.original(.tcp(Fixture.client(1000), Fixture.server), .syn, now: 2), .refused(.tableFull))
        XCTAssertEqual(table.original(.udp(Fixture.client(1001), Fixture.server), now: 2), .refused(.tableFull))
        let stats = table.statistics
        XCTAssertEqual(stats.refusedTableFull, 2)
        XCTAssertEqual(stats.destroyedEvicted, 0)
        XCTAssertEqual(stats.count, limit)
        // Packets of existing flows still pass through a full table.
        XCTAssertEqual(table.original(.tcp(Fixture.client(3), Fixture.server), .ack, now: 2), .rewriteDestination(Fixture.proxy))
    }

    func testExpiredFlowsAreReclaimedBeforeAnythingIsEvicted() {
        let table = Fixture.table(limit: limit)
        for i in 0..<limit { establish(table, Fixture.client(i), now: 1) }
        table.original(.tcp(Fixture.client(5), Fixture.server), .rst, now: 1)  // CLOSE, 10 s
        XCTAssertEqual(table.original(.tcp(Fixture.client(1000), Fixture.server), .syn, now: 20), .rewriteDestination(Fixture.proxy))
        XCTAssertEqual(table.statistics.destroyedClosed, 1)
        XCTAssertEqual(table.statistics.destroyedEvicted, 0)
    }

    func testUnansweredUDPIsEvictableAndAStreamIsNot() {
        let table = Fixture.table(limit: 2)
        let stream = FlowTuple.udp(Fixture.client(1), Fixture.server)
        table.original(stream, now: 1)
        table.reply(.udp(Fixture.proxy, Fixture.client(1)), [], length: 10, now: 1)
        table.original(stream, now: 1)
        table.original(.udp(Fixture.client(2), Fixture.server), now: 1)
        XCTAssertEqual(table.original(.udp(Fixture.client(3), Fixture.server), now: 1), .rewriteDestination(Fixture.proxy))
        XCTAssertEqual(table.lookup(proto: .udp, client: Fixture.client(2), local: Fixture.proxy, now: 1), .expired(.evicted))
        XCTAssertEqual(
            table.lookup(proto: .udp, client: Fixture.client(1), local: Fixture.proxy, now: 1),
            .redirected(original: Fixture.server))
    }

    func testLimitHoldsAcrossShards() {
        let table = Fixture.table(limit: 4096, shards: 16)
        XCTAssertEqual(table.shardCount, 16)
        var refused = 0
        for i in 0..<5000 {
            if case .refused = table.original(.udp(Fixture.client(i), Fixture.server), now: 1) { refused += 1 }
        }
        XCTAssertEqual(table.count, 4096)
        XCTAssertEqual(refused, 0, "unassured flows are evicted to admit new ones")
        XCTAssertEqual(table.statistics.destroyedEvicted, 5000 - 4096)
        XCTAssertEqual(table.invariantViolations(), [])
    }
}
