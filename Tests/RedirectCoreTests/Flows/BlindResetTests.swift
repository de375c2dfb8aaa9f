import XCTest

@testable import RedirectCore

/// A forged reset (RST at any sequence number but the client's next one) must not end an
/// established flow: the proxy's kernel does not act on it either, so the connection goes on and
/// needs its mapping (RFC 5961).
final class BlindResetTests: XCTestCase {
    private let tuple = FlowTuple.tcp(Fixture.client, Fixture.server)
    private let reply = FlowTuple.tcp(Fixture.proxy, Fixture.client)

    /// SYN at 1000, SYN/ACK, then 5000 bytes of data from the client: its sequence ends at 6001.
    private func establishedTable() -> FlowTable {
        let table = Fixture.table()
        segment(table, .syn, start: 1000, dataLength: 0)
        table.reply(reply, [.syn, .ack], now: 1)
        segment(table, .ack, start: 1001, dataLength: 5000)
        XCTAssertEqual(table.record(of: Fixture.client, now: 1)?.state, .established)
        return table
    }

    @discardableResult
    private func segment(_ table: FlowTable, _ flags: TCPFlags, start: UInt32, dataLength: UInt32) -> OriginalOutcome {
        let syn: UInt32 = flags.contains(.syn) ? 1 : 0
        let span = TCPSequenceSpan(start: start, end: start &+ dataLength &+ syn)
        return table.handleOriginal(tuple, tcpFlags: flags, sequence: span, length: 60, now: 1) { _ in .redirect(to: Fixture.proxy) }
    }

    func testAResetFarFromTheClientsSequenceIsIgnoredAndCounted() {
        let table = establishedTable()
        XCTAssertEqual(segment(table, .rst, start: 6001 &+ 0x4000_0000, dataLength: 0), .rewriteDestination(Fixture.proxy))
        XCTAssertEqual(table.record(of: Fixture.client, now: 1)?.state, .established)
        XCTAssertEqual(table.statistics.blindResets, 1)
    }

    func testAResetAtTheClientsSequenceClosesTheFlow() {
        let table = establishedTable()
        segment(table, .rst, start: 6001, dataLength: 0)
        XCTAssertEqual(table.record(of: Fixture.client, now: 1)?.state, .close)
        XCTAssertEqual(table.statistics.blindResets, 0)
    }

    func testAResetInsideTheWindowButNotExactIsPassedOnAndNotBelieved() {
        // The kernel's rule (RFC 5961): the proxy answers it with a challenge ACK; only a reset at
        // exactly the client's next sequence number, which a real client then sends, ends the flow.
        let table = establishedTable()
        for start: UInt32 in [3001, 6000, 6002, 6001 &+ 4096] {
            XCTAssertEqual(segment(table, .rst, start: start, dataLength: 0), .rewriteDestination(Fixture.proxy))
            XCTAssertEqual(table.record(of: Fixture.client, now: 1)?.state, .established, "reset at \(start)")
        }
        XCTAssertEqual(table.statistics.blindResets, 4)
        segment(table, .rst, start: 6001, dataLength: 0)
        XCTAssertEqual(table.record(of: Fixture.client, now: 1)?.state, .close)
    }

    func testAForgedSegmentCannotMoveTheSequenceForAForgedReset() {
        let table = establishedTable()
        let far: UInt32 = 6001 &+ 0x8000_0000
        segment(table, .ack, start: far, dataLength: 100)
        segment(table, .rst, start: far &+ 100, dataLength: 0)
        XCTAssertEqual(table.record(of: Fixture.client, now: 1)?.state, .established)
        XCTAssertEqual(table.statistics.blindResets, 1)
    }

    func testSequenceNumbersWrapAround() {
        let table = Fixture.table()
        segment(table, .syn, start: 0xFFFF_FF00, dataLength: 0)
        table.reply(reply, [.syn, .ack], now: 1)
        segment(table, .ack, start: 0xFFFF_FF01, dataLength: 0x200)  // ends at 0x101, past the wrap
        segment(table, .rst, start: 0x101, dataLength: 0)
        XCTAssertEqual(table.record(of: Fixture.client, now: 1)?.state, .close)
    }

    func testWithoutSequenceNumbersEveryResetIsBelieved() {
        // Restored flows and callers without a parsed segment: the state machine's rule.
        let table = establishedTable()
        table.original(tuple, .rst, now: 1)
        XCTAssertEqual(table.record(of: Fixture.client, now: 1)?.state, .close)
    }
}
