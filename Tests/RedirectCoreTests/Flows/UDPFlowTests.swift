import XCTest

@testable import RedirectCore

final class UDPFlowTests: XCTestCase {
    private let tuple = FlowTuple.udp(Fixture.client, Fixture.server)
    private let reply = FlowTuple.udp(Fixture.proxy, Fixture.client)

    func testAnyPacketStartsAUDPFlowWithTheUnrepliedTimeout() {
        let table = Fixture.table()
        XCTAssertEqual(table.original(tuple, length: 100, now: 10), .rewriteDestination(Fixture.proxy))
        XCTAssertEqual(table.original(tuple, length: 50, now: 20), .rewriteDestination(Fixture.proxy))
        let record = table.record(of: Fixture.client, now: 20)
        XCTAssertEqual(record?.state, .udpUnreplied)
        XCTAssertEqual(record?.expires, 50)
        XCTAssertEqual(record?.originalPackets, 2)
        XCTAssertEqual(record?.originalBytes, 150)
        XCTAssertEqual(record?.assured, false)
        XCTAssertEqual(
            table.lookup(proto: .udp, client: Fixture.client, local: Fixture.proxy, now: 49),
            .redirected(original: Fixture.server))
        XCTAssertEqual(table.lookup(proto: .udp, client: Fixture.client, local: Fixture.proxy, now: 50), .expired(.expired))
    }

    func testFirstAnswerMarksRepliedAndTheNextPacketMakesAStream() {
        let table = Fixture.table()
        table.original(tuple, now: 10)
        XCTAssertEqual(table.handleReply(reply, tcpFlags: [], length: 80, now: 11), .rewriteSource(Fixture.server))
        var record = table.record(of: Fixture.client, now: 11)
        XCTAssertEqual(record?.state, .udpReplied)
        XCTAssertEqual(record?.seenReply, true)
        XCTAssertEqual(record?.assured, false, "one request and one answer are not a stream")
        XCTAssertEqual(record?.expires, 41)
        table.original(tuple, now: 12)
        record = table.record(of: Fixture.client, now: 12)
        XCTAssertEqual(record?.assured, true)
        XCTAssertEqual(record?.expires, 132)
        XCTAssertEqual(record?.replyPackets, 1)
        XCTAssertEqual(record?.replyBytes, 80)
        table.reply(reply, [], length: 80, now: 100)
        XCTAssertEqual(table.record(of: Fixture.client, now: 100)?.expires, 220)
        XCTAssertEqual(
            table.lookup(proto: .udp, client: Fixture.client, local: Fixture.proxy, now: 219),
            .redirected(original: Fixture.server))
        XCTAssertEqual(table.handleReply(reply, tcpFlags: [], length: 80, now: 220), .untracked)
        XCTAssertEqual(table.count, 0)
        XCTAssertEqual(table.statistics.destroyedExpired, 1)
    }

    func testTCPAndUDPFlowsWithTheSameAddressesAreDistinct() {
        let table = Fixture.table()
        table.original(tuple, now: 1, redirectTo: Fixture.proxy)
        table.original(.tcp(Fixture.client, Fixture.server), .syn, now: 1, redirectTo: nil)
        XCTAssertEqual(
            table.lookup(proto: .udp, client: Fixture.client, local: Fixture.proxy, now: 1),
            .redirected(original: Fixture.server))
        XCTAssertEqual(table.lookup(proto: .tcp, client: Fixture.client, local: Fixture.server, now: 1), .notRedirected)
        XCTAssertEqual(table.lookup(proto: .tcp, client: Fixture.client, local: Fixture.proxy, now: 1), .notFound)
    }
}
