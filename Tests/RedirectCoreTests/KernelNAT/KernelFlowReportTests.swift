import XCTest

@testable import RedirectCore

/// How conntrack's reports keep the table current in kernel-nat mode: state and timer follow
/// the kernel, a destroy removes the flow, a flow the table lost is entered again, a reply
/// tuple the kernel's NAT chose differently moves, and a resync removes the unheard.
final class KernelFlowReportTests: XCTestCase {
    private let client = Endpoint(IPAddress("192.0.2.2")!, 40000)
    private let server = Endpoint(IPAddress("203.0.113.10")!, 80)
    private let proxy = Endpoint(IPAddress("192.0.2.1")!, 8080)

    private func makeTable() -> FlowTable {
        try! FlowTable(configuration: FlowTableConfiguration(limit: 1024, shardCount: 2, seed: 5))
    }

    private func start(_ table: FlowTable, now: UInt32 = 100) {
        let outcome = table.handleOriginal(
            FlowTuple(proto: .tcp, source: client, destination: server), tcpFlags: [.syn], length: 60, now: now
        ) { _ in .redirect(to: self.proxy) }
        XCTAssertEqual(outcome, .rewriteDestination(proxy))
    }

    private func report(_ state: FlowState, timeout: UInt32, replySource: Endpoint? = nil, destroyed: Bool = false) -> KernelFlowReport {
        KernelFlowReport(
            original: FlowTuple(proto: .tcp, source: client, destination: server), replySource: replySource ?? proxy, state: state,
            seenReply: state != .synSent, assured: state == .established, timeout: timeout, destroyed: destroyed)
    }

    func testTheKernelsStateAndTimerWinAndADestroyRemoves() {
        let table = makeTable()
        start(table)
        XCTAssertEqual(table.applyKernelReport(report(.established, timeout: 432_000), grace: 60, now: 101), .updated)
        var record = table.records(now: 101)[0]
        XCTAssertEqual(record.state, .established)
        XCTAssertTrue(record.assured)
        XCTAssertEqual(record.expires, 101 + 432_000 + 60)
        XCTAssertEqual(table.applyKernelReport(report(.timeWait, timeout: 120), grace: 60, now: 105), .updated)
        record = table.records(now: 105)[0]
        XCTAssertEqual(record.state, .timeWait)
        XCTAssertEqual(table.applyKernelReport(report(.timeWait, timeout: 0, destroyed: true), grace: 60, now: 200), .removed)
        XCTAssertEqual(table.count, 0)
        XCTAssertEqual(table.lookup(proto: .tcp, client: client, local: proxy, now: 200), .expired(.closed))
        XCTAssertEqual(table.applyKernelReport(report(.close, timeout: 0, destroyed: true), grace: 60, now: 201), .ignored)
        XCTAssertTrue(table.invariantViolations().isEmpty)
    }

    func testTheDestroyOfAnOldConnectionSparesANewOneOnTheSameTuple() {
        let table = makeTable()
        start(table, now: 100)
        XCTAssertEqual(table.applyKernelReport(report(.established, timeout: 300), grace: 60, now: 101), .updated)
        XCTAssertEqual(table.applyKernelReport(report(.timeWait, timeout: 120), grace: 60, now: 110), .updated)
        // The client reopens: the kernel deletes the TIME_WAIT entry and queues the new SYN...
        start(table, now: 111)
        XCTAssertEqual(table.statistics.destroyedReplaced, 1)
        // ...then reports the old entry's end, then the new entry.
        XCTAssertEqual(table.applyKernelReport(report(.timeWait, timeout: 0, destroyed: true), grace: 60, now: 111), .ignored)
        XCTAssertEqual(table.lookup(proto: .tcp, client: client, local: proxy, now: 111), .redirected(original: server))
        XCTAssertEqual(table.applyKernelReport(report(.synSent, timeout: 120), grace: 60, now: 111), .updated)
        XCTAssertEqual(table.applyKernelReport(report(.close, timeout: 0, destroyed: true), grace: 60, now: 112), .removed)
    }

    func testTheOldConnectionsLateEventsDoNotCloseTheNewOne() {
        let table = makeTable()
        start(table, now: 100)
        XCTAssertEqual(table.applyKernelReport(report(.established, timeout: 300), grace: 60, now: 101), .updated)
        XCTAssertEqual(table.applyKernelReport(report(.finWait, timeout: 120), grace: 60, now: 102), .updated)
        // The client reopens at once: the SYN reaches the datapath before the conntrack thread
        // has read the old entry's last events.
        start(table, now: 103)
        XCTAssertEqual(table.statistics.destroyedReplaced, 1)
        XCTAssertEqual(table.applyKernelReport(report(.timeWait, timeout: 120), grace: 60, now: 103), .ignored, "the old entry's late event")
        XCTAssertEqual(table.applyKernelReport(report(.timeWait, timeout: 0, destroyed: true), grace: 60, now: 103), .ignored)
        XCTAssertEqual(table.records(now: 103).first?.state, .synSent)
        var current = report(.timeWait, timeout: 100)
        current.current = true
        XCTAssertEqual(table.applyKernelReport(current, grace: 60, now: 104), .updated, "a read of the kernel's table is believed")
    }

    func testANewFlowWhoseReplyTupleAConfirmedFlowHoldsIsLeftToTheKernel() {
        let table = makeTable()
        start(table)
        XCTAssertEqual(table.applyKernelReport(report(.established, timeout: 300), grace: 60, now: 101), .updated)
        // The same client port to another redirected destination: the same reply tuple
        // (proxy -> client). The old connection's closing was never reported; the kernel judges.
        let other = Endpoint(IPAddress("203.0.113.10")!, 443)
        let outcome = table.handleOriginal(FlowTuple(proto: .tcp, source: client, destination: other), tcpFlags: [.syn], length: 60, now: 102) {
            _ in .redirect(to: self.proxy)
        }
        XCTAssertEqual(outcome, .rewriteDestination(proxy))
        XCTAssertEqual(table.lookup(proto: .tcp, client: client, local: proxy, now: 102), .redirected(original: other))
        XCTAssertEqual(table.statistics.refusedTupleInUse, 0)
        XCTAssertTrue(table.invariantViolations().isEmpty)
    }

    func testStatusBitsMoveTheHandshakeWhenTheKernelSendsNoState() {
        let table = makeTable()
        start(table)
        var reply = report(.synReceived, timeout: 60)
        reply.state = nil
        XCTAssertEqual(table.applyKernelReport(reply, grace: 60, now: 101), .updated)
        XCTAssertEqual(table.records(now: 101).first?.state, .synReceived)
        var assured = report(.established, timeout: 432_000)
        assured.state = nil
        XCTAssertEqual(table.applyKernelReport(assured, grace: 60, now: 102), .updated)
        XCTAssertEqual(table.records(now: 102).first?.state, .established)
        XCTAssertEqual(table.applyKernelReport(report(.timeWait, timeout: 120), grace: 60, now: 103), .updated)
        XCTAssertEqual(table.applyKernelReport(assured, grace: 60, now: 104), .updated)
        XCTAssertEqual(table.records(now: 104).first?.state, .timeWait, "status bits never move a flow back")
    }

    func testAQueuedSynOrDatagramOnAConfirmedFlowIsANewConnection() {
        let table = makeTable()
        start(table)
        XCTAssertEqual(table.applyKernelReport(report(.established, timeout: 300), grace: 60, now: 101), .updated)
        // Only packets that start a conntrack entry are queued: the old entry is gone.
        start(table, now: 102)
        XCTAssertEqual(table.statistics.destroyedReplaced, 1)
        XCTAssertEqual(table.applyKernelReport(report(.established, timeout: 0, destroyed: true), grace: 60, now: 102), .ignored)
        XCTAssertEqual(table.lookup(proto: .tcp, client: client, local: proxy, now: 102), .redirected(original: server))
    }

    func testAReportWithoutAStateKeepsTheFlowsState() {
        let table = makeTable()
        start(table)
        var noState = report(.established, timeout: 300)
        noState.state = nil
        noState.seenReply = false
        noState.assured = false
        XCTAssertEqual(table.applyKernelReport(noState, grace: 60, now: 101), .updated)
        XCTAssertEqual(table.records(now: 101)[0].state, .synSent)
        XCTAssertEqual(table.records(now: 101)[0].expires, 101 + 300 + 60)
    }

    func testAFlowTheTableLostIsAdoptedAndAMovedReplyTupleIsRekeyed() {
        let table = makeTable()
        XCTAssertEqual(table.applyKernelReport(report(.established, timeout: 300), grace: 60, now: 100), .adopted)
        XCTAssertEqual(table.lookup(proto: .tcp, client: client, local: proxy, now: 100), .redirected(original: server))
        let other = Endpoint(IPAddress("198.51.100.1")!, 8080)
        XCTAssertEqual(table.applyKernelReport(report(.established, timeout: 300, replySource: other), grace: 60, now: 101), .rekeyed)
        XCTAssertEqual(table.lookup(proto: .tcp, client: client, local: other, now: 101), .redirected(original: server))
        XCTAssertEqual(table.lookup(proto: .tcp, client: client, local: proxy, now: 101), .notFound)
        XCTAssertTrue(table.invariantViolations().isEmpty)
    }

    func testAResyncRemovesFlowsTheKernelNoLongerHasButNotNewerOnes() {
        let table = makeTable()
        start(table, now: 100)
        let newer = Endpoint(IPAddress("192.0.2.3")!, 40001)
        _ = table.handleOriginal(FlowTuple(proto: .tcp, source: newer, destination: server), tcpFlags: [.syn], length: 60, now: 110) { _ in
            .redirect(to: self.proxy)
        }
        XCTAssertEqual(table.removeRedirected(notIn: [], createdBefore: 110, now: 110), 1)
        XCTAssertEqual(table.count, 1, "a flow created since the read began may not be confirmed yet")
        XCTAssertEqual(table.removeRedirected(notIn: [FlowTuple(proto: .tcp, source: newer, destination: server)], createdBefore: 200, now: 200), 0)
    }

    func testKernelTCPStatesMapOntoTheTablesStates() {
        XCTAssertEqual(KernelFlowReport.state(proto: .tcp, kernelTCPState: 3, seenReply: true), .established)
        XCTAssertEqual(KernelFlowReport.state(proto: .tcp, kernelTCPState: 7, seenReply: true), .timeWait)
        XCTAssertNil(KernelFlowReport.state(proto: .tcp, kernelTCPState: 0, seenReply: false))
        XCTAssertNil(KernelFlowReport.state(proto: .tcp, kernelTCPState: 9, seenReply: false))
        XCTAssertEqual(KernelFlowReport.state(proto: .udp, kernelTCPState: 0, seenReply: true), .udpReplied)
    }
}
