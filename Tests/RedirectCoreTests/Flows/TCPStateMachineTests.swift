import XCTest

@testable import RedirectCore

final class TCPStateMachineTests: XCTestCase {
    private enum Side { case client, proxy }

    /// One packet and the state the flow must be in afterwards (nil: no flow).
    private struct Step {
        var side: Side
        var flags: TCPFlags
        var expected: FlowState?
        init(_ side: Side, _ flags: TCPFlags, _ expected: FlowState?) {
            self.side = side
            self.flags = flags
            self.expected = expected
        }
    }

    private struct Scenario {
        var name: String
        var steps: [Step]
        var assuredAtEnd = false
    }

    private let syn: TCPFlags = .syn
    private let synAck: TCPFlags = [.syn, .ack]
    private let ack: TCPFlags = .ack
    private let data: TCPFlags = [.ack, .psh]
    private let fin: TCPFlags = [.fin, .ack]
    private let rst: TCPFlags = .rst
    private let rstAck: TCPFlags = [.rst, .ack]

    private var scenarios: [Scenario] {
        [
            Scenario(
                name: "three-way handshake and data",
                steps: [
                    Step(.client, syn, .synSent), Step(.proxy, synAck, .synReceived), Step(.client, ack, .established),
                    Step(.client, data, .established), Step(.proxy, data, .established),
                ], assuredAtEnd: true),
            Scenario(
                name: "client closes first",
                steps: [
                    Step(.client, syn, .synSent), Step(.proxy, synAck, .synReceived), Step(.client, ack, .established),
                    Step(.client, fin, .finWait), Step(.proxy, ack, .closeWait), Step(.proxy, fin, .lastAck),
                    Step(.client, ack, .timeWait),
                ], assuredAtEnd: true),
            Scenario(
                name: "proxy closes first",
                steps: [
                    Step(.client, syn, .synSent), Step(.proxy, synAck, .synReceived), Step(.client, ack, .established),
                    Step(.proxy, fin, .finWait), Step(.client, ack, .closeWait), Step(.client, fin, .lastAck),
                    Step(.proxy, ack, .timeWait),
                ], assuredAtEnd: true),
            Scenario(
                name: "simultaneous FINs",
                steps: [
                    Step(.client, syn, .synSent), Step(.proxy, synAck, .synReceived), Step(.client, ack, .established),
                    Step(.client, fin, .finWait), Step(.proxy, fin, .lastAck), Step(.client, ack, .timeWait),
                    Step(.proxy, ack, .timeWait),
                ], assuredAtEnd: true),
            Scenario(
                name: "RST on an established flow",
                steps: [
                    Step(.client, syn, .synSent), Step(.proxy, synAck, .synReceived), Step(.client, ack, .established),
                    Step(.proxy, rstAck, .close),
                ], assuredAtEnd: true),
            Scenario(
                name: "proxy refuses: RST before any reply ends the flow at once",
                steps: [
                    Step(.client, syn, .synSent), Step(.proxy, rstAck, nil),
                ]),
            Scenario(name: "client aborts its SYN", steps: [Step(.client, syn, .synSent), Step(.client, rst, nil)]),
            Scenario(
                name: "retransmitted SYN and SYN/ACK",
                steps: [
                    Step(.client, syn, .synSent), Step(.client, syn, .synSent), Step(.proxy, synAck, .synReceived),
                    Step(.proxy, synAck, .synReceived), Step(.client, ack, .established),
                ], assuredAtEnd: true),
            Scenario(
                name: "invalid packets change nothing",
                steps: [
                    Step(.client, syn, .synSent), Step(.client, ack, .synSent), Step(.client, fin, .synSent),
                    Step(.proxy, fin, .synSent), Step(.proxy, syn, .synSent), Step(.client, [.syn, .fin], .synSent),
                    Step(.client, [], .synSent), Step(.proxy, synAck, .synReceived),
                ]),
            Scenario(
                name: "half-open: proxy ACK without SYN/ACK is ignored",
                steps: [
                    Step(.client, syn, .synSent), Step(.proxy, ack, .synSent),
                ]),
            Scenario(
                name: "SYN on an established flow is ignored, its SYN/ACK resynchronises",
                steps: [
                    Step(.client, syn, .synSent), Step(.proxy, synAck, .synReceived), Step(.client, ack, .established),
                    Step(.client, syn, .established), Step(.proxy, synAck, .synReceived), Step(.client, ack, .established),
                ], assuredAtEnd: true),
            Scenario(
                name: "late SYN/ACK on an established flow is ignored",
                steps: [
                    Step(.client, syn, .synSent), Step(.proxy, synAck, .synReceived), Step(.client, ack, .established),
                    Step(.proxy, synAck, .established),
                ], assuredAtEnd: true),
            Scenario(
                name: "not assured until the client's ACK",
                steps: [
                    Step(.client, syn, .synSent), Step(.proxy, synAck, .synReceived),
                ]),
        ]
    }

    func testScenarios() {
        for scenario in scenarios {
            let table = Fixture.table()
            let tuple = FlowTuple.tcp(Fixture.client, Fixture.server)
            let reply = FlowTuple.tcp(Fixture.proxy, Fixture.client)
            for (number, step) in scenario.steps.enumerated() {
                let now = UInt32(100 + number)
                switch step.side {
                case .client:
                    XCTAssertEqual(
                        table.original(tuple, step.flags, now: now), .rewriteDestination(Fixture.proxy),
                        "\(scenario.name), step \(number)")
                case .proxy:
                    XCTAssertEqual(
                        table.handleReply(reply, tcpFlags: step.flags, length: 60, now: now),
                        .rewriteSource(Fixture.server), "\(scenario.name), step \(number)")
                }
                XCTAssertEqual(
                    table.record(of: Fixture.client, now: now)?.state, step.expected,
                    "\(scenario.name), step \(number)")
            }
            if let last = scenario.steps.last, last.expected != nil {
                let end = UInt32(100 + scenario.steps.count - 1)
                XCTAssertEqual(table.record(of: Fixture.client, now: end)?.assured, scenario.assuredAtEnd, scenario.name)
            }
            XCTAssertEqual(table.invariantViolations(), [], scenario.name)
        }
    }

    func testOnlyALoneSYNStartsATCPFlow() {
        let table = Fixture.table()
        let tuple = FlowTuple.tcp(Fixture.client, Fixture.server)
        for flags: TCPFlags in [.ack, [.syn, .ack], [.fin, .ack], .rst, [], [.syn, .fin], [.syn, .rst]] {
            XCTAssertEqual(table.original(tuple, flags, now: 1), .untracked, "\(flags)")
        }
        XCTAssertEqual(table.count, 0)
        XCTAssertEqual(table.statistics.untrackedOriginal, 7)
        XCTAssertEqual(table.original(tuple, [.syn, .ece, .cwr], now: 1), .rewriteDestination(Fixture.proxy))
        XCTAssertEqual(table.statistics.created, 1)
    }

    func testRepliesNeverCreateFlows() {
        let table = Fixture.table()
        XCTAssertEqual(table.handleReply(.tcp(Fixture.proxy, Fixture.client), tcpFlags: .syn, length: 60, now: 1), .untracked)
        XCTAssertEqual(table.handleReply(.udp(Fixture.proxy, Fixture.client), tcpFlags: [], length: 60, now: 1), .untracked)
        XCTAssertEqual(table.count, 0)
        XCTAssertEqual(table.statistics.untrackedReply, 2)
    }

    func testNewSYNInTimeWaitOrCloseReplacesTheFlow() {
        for (finalState, closing) in [(FlowState.timeWait, [TCPFlags.fin, .ack]), (.close, [.rst])] {
            let table = Fixture.table(events: 64)
            let tuple = FlowTuple.tcp(Fixture.client, Fixture.server)
            let reply = FlowTuple.tcp(Fixture.proxy, Fixture.client)
            table.original(tuple, .syn, now: 1)
            table.reply(reply, [.syn, .ack], length: 60, now: 1)
            table.original(tuple, .ack, now: 1)
            if finalState == .timeWait {
                table.original(tuple, [.fin, .ack], now: 2)
                table.reply(reply, [.fin, .ack], length: 60, now: 2)
                table.original(tuple, .ack, now: 2)
            } else {
                table.original(tuple, closing[0], now: 2)
            }
            XCTAssertEqual(table.record(of: Fixture.client, now: 3)?.state, finalState)
            // The new connection may get a new decision: here it is redirected elsewhere.
            let other = Endpoint(Fixture.proxy.address, 9090)
            XCTAssertEqual(table.original(tuple, .syn, length: 74, now: 3, redirectTo: other), .rewriteDestination(other))
            let record = table.record(of: Fixture.client, now: 3)
            XCTAssertEqual(record?.state, .synSent)
            XCTAssertEqual(record?.redirectTarget, other)
            XCTAssertEqual(record?.originalPackets, 1)
            XCTAssertEqual(record?.originalBytes, 74)
            XCTAssertEqual(table.count, 1)
            XCTAssertEqual(table.statistics.destroyedReplaced, 1)
            XCTAssertEqual(table.drainEvents().map(\.kind), [.created, .destroyed(.replaced), .created])
            XCTAssertEqual(table.invariantViolations(), [])
        }
    }

    /// Each state keeps the flow for exactly its timeout after the last packet that set it.
    func testTimeoutPerState() {
        let timeouts = FlowTimeouts(
            synSent: 11, synReceived: 12, established: 13, finWait: 14, closeWait: 15, lastAck: 16,
            timeWait: 17, close: 18, udpUnreplied: 19, udpReplied: 20)
        let syn: (Side, TCPFlags) = (.client, .syn)
        let paths: [(FlowState, [(Side, TCPFlags)], FlowEndReason)] = [
            (.synSent, [syn], .expired),
            (.synReceived, [syn, (.proxy, [.syn, .ack])], .expired),
            (.established, [syn, (.proxy, [.syn, .ack]), (.client, .ack)], .expired),
            (.finWait, [syn, (.proxy, [.syn, .ack]), (.client, .ack), (.client, [.fin, .ack])], .expired),
            (.closeWait, [syn, (.proxy, [.syn, .ack]), (.client, .ack), (.client, [.fin, .ack]), (.proxy, .ack)], .expired),
            (.lastAck, [syn, (.proxy, [.syn, .ack]), (.client, .ack), (.client, [.fin, .ack]), (.proxy, [.fin, .ack])], .expired),
            (
                .timeWait,
                [
                    syn, (.proxy, [.syn, .ack]), (.client, .ack), (.client, [.fin, .ack]), (.proxy, [.fin, .ack]),
                    (.client, .ack),
                ], .closed
            ),
            (.close, [syn, (.proxy, [.syn, .ack]), (.client, .ack), (.proxy, .rst)], .closed),
        ]
        for (state, packets, reason) in paths {
            let table = Fixture.table(timeouts: timeouts)
            let tuple = FlowTuple.tcp(Fixture.client, Fixture.server)
            let reply = FlowTuple.tcp(Fixture.proxy, Fixture.client)
            let start: UInt32 = 1000
            for (side, flags) in packets {
                if side == .client {
                    table.original(tuple, flags, now: start)
                } else {
                    table.reply(reply, flags, length: 60, now: start)
                }
            }
            XCTAssertEqual(table.record(of: Fixture.client, now: start)?.state, state)
            let timeout = timeouts[state]
            let lookup = { (now: UInt32) in
                table.lookup(proto: .tcp, client: Fixture.client, local: Fixture.proxy, now: now)
            }
            XCTAssertEqual(lookup(start + timeout - 1), .redirected(original: Fixture.server), "\(state)")
            XCTAssertEqual(lookup(start + timeout), .expired(reason), "\(state)")
            XCTAssertEqual(table.count, 0, "\(state)")
            XCTAssertEqual(table.statistics.destroyed(reason), 1, "\(state)")
        }
    }

    func testKernelDefaultTimeouts() {
        let timeouts = FlowTimeouts()
        XCTAssertEqual(FlowState.allCases.map { timeouts[$0] }, [120, 60, 432_000, 120, 60, 30, 120, 10, 30, 120])
    }

    func testIgnoredAndInvalidPacketsDoNotRefreshTheTimeout() {
        let table = Fixture.table()
        let tuple = FlowTuple.tcp(Fixture.client, Fixture.server)
        table.original(tuple, .syn, now: 0)
        table.original(tuple, .ack, now: 100)  // invalid in SYN_SENT
        table.handleReply(.tcp(Fixture.proxy, Fixture.client), tcpFlags: .ack, length: 60, now: 100)  // ignored
        XCTAssertEqual(table.record(of: Fixture.client, now: 100)?.expires, 120)
        XCTAssertEqual(table.record(of: Fixture.client, now: 100)?.originalPackets, 2)
        XCTAssertEqual(table.statistics.invalid, 1)
        table.original(tuple, .syn, now: 100)  // retransmission: refreshes
        XCTAssertEqual(table.record(of: Fixture.client, now: 100)?.expires, 220)
    }
}
