import XCTest

@testable import RedirectCore

/// The table tells its observer of every redirected flow that starts and ends, so a copy of
/// the answers (the kernel's getsockopt hook) never disagrees with it.
final class RedirectedFlowObserverTests: XCTestCase {
    final class Recorder: RedirectedFlowObserver, @unchecked Sendable {
        private let lock = Locked<[String]>([])
        var log: [String] { lock.withLock { $0 } }

        func redirectedFlowStarted(_ flow: RedirectedFlow) {
            lock.withLock { $0.append("start \(flow.client) \(flow.target) \(flow.originalDestination)") }
        }

        func redirectedFlowEnded(_ flow: RedirectedFlow) {
            lock.withLock { $0.append("end \(flow.client) \(flow.target)") }
        }
    }

    private func table(_ recorder: Recorder, limit: Int = 1024, timeouts: FlowTimeouts = FlowTimeouts()) -> FlowTable {
        try! FlowTable(
            configuration: FlowTableConfiguration(limit: limit, shardCount: 1, timeouts: timeouts, seed: 42),
            observer: recorder)
    }

    private let start = "start \(Fixture.client) \(Fixture.proxy) \(Fixture.server)"
    private let end = "end \(Fixture.client) \(Fixture.proxy)"

    func testARedirectedFlowIsAnnouncedBeforeItsFirstPacketLeavesAndOnceOnly() {
        let recorder = Recorder()
        let table = table(recorder)
        XCTAssertEqual(table.original(.tcp(Fixture.client, Fixture.server), .syn, now: 1), .rewriteDestination(Fixture.proxy))
        XCTAssertEqual(recorder.log, [start])
        table.original(.tcp(Fixture.client, Fixture.server), .syn, now: 2)  // a retransmitted SYN
        table.reply(.tcp(Fixture.proxy, Fixture.client), [.syn, .ack], now: 2)
        table.original(.tcp(Fixture.client, Fixture.server), .ack, now: 2)
        XCTAssertEqual(recorder.log, [start])
    }

    func testTrackedOnlyAndRefusedFlowsAreNotAnnounced() {
        let recorder = Recorder()
        let table = table(recorder)
        table.original(.tcp(Fixture.client, Fixture.server), .syn, now: 1, redirectTo: nil)
        XCTAssertEqual(recorder.log, [])
        table.original(.tcp(Fixture.client6, Fixture.server6), .syn, now: 1, redirectTo: Fixture.proxy6)
        // The same client port redirected to the same target for another destination: refused.
        let other = Endpoint(Fixture.server6.address, 444)
        XCTAssertEqual(table.original(.tcp(Fixture.client6, other), .syn, now: 1, redirectTo: Fixture.proxy6), .refused(.tupleInUse))
        XCTAssertEqual(recorder.log, ["start \(Fixture.client6) \(Fixture.proxy6) \(Fixture.server6)"])
    }

    func testAClosedFlowIsAnnouncedGoneWhenTheTableDropsIt() {
        let recorder = Recorder()
        let table = table(recorder)
        table.original(.tcp(Fixture.client, Fixture.server), .syn, now: 1)
        table.reply(.tcp(Fixture.proxy, Fixture.client), [.rst], now: 2)
        table.sweep(now: 1000, budget: 100)
        XCTAssertEqual(recorder.log, [start, end])
    }

    func testExpiryEvictionAndReplacementAnnounceTheEnd() {
        let recorder = Recorder()
        var timeouts = FlowTimeouts()
        timeouts.udpUnreplied = 5
        let table = table(recorder, limit: 1024, timeouts: timeouts)
        // Expiry found by a lookup.
        table.original(.udp(Fixture.client, Fixture.server), now: 1)
        XCTAssertEqual(table.lookup(proto: .udp, client: Fixture.client, local: Fixture.proxy, now: 10), .expired(.expired))
        XCTAssertEqual(recorder.log, ["start \(Fixture.client) \(Fixture.proxy) \(Fixture.server)", end])

        // Early drop of a flow that is not assured, in a full table.
        let small = Recorder()
        let full = try! FlowTable(configuration: FlowTableConfiguration(limit: 2, shardCount: 1, seed: 1), observer: small)
        full.original(.tcp(Fixture.client(1), Fixture.server), .syn, now: 1)
        full.original(.tcp(Fixture.client(2), Fixture.server), .syn, now: 1)
        full.original(.tcp(Fixture.client(3), Fixture.server), .syn, now: 1)
        XCTAssertEqual(small.log.filter { $0.hasPrefix("end ") }.count, 1)
        XCTAssertEqual(small.log.filter { $0.hasPrefix("start ") }.count, 3)
    }

    func testRestoredFlowsAreAnnounced() {
        let source = Fixture.table()
        source.original(.tcp(Fixture.client, Fixture.server), .syn, now: 1)
        source.original(.tcp(Fixture.client(7), Fixture.server), .syn, now: 1, redirectTo: nil)
        let recorder = Recorder()
        XCTAssertEqual(table(recorder).restore(source.records(now: 2), now: 2), 2)
        XCTAssertEqual(recorder.log, [start])
    }
}
