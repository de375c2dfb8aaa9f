import Dispatch
import Kernel
import KernelTesting
import RedirectCore
import XCTest

final class InMemoryConntrackEventsTests: XCTestCase {
    private func event(_ kind: ConntrackEvent.Kind, port: UInt16, mark: UInt32) -> ConntrackEvent {
        ConntrackEvent(
            kind: kind,
            original: FlowTuple(proto: .tcp, source: Endpoint(.ipv4Loopback, port), destination: Endpoint(.ipv4Loopback, 80)),
            reply: FlowTuple(proto: .tcp, source: Endpoint(.ipv4Loopback, 8080), destination: Endpoint(.ipv4Loopback, port)),
            tcpState: .synSent, mark: mark)
    }

    func testReceiveFiltersByMarkAndReportsOverruns() throws {
        let source = try InMemoryConntrackEvents(markValue: 0x100, markMask: 0xf00, eventsPerReceive: 2)
        var events: [ConntrackEvent] = []
        XCTAssertEqual(try source.receive(into: &events, timeoutMilliseconds: 10), .timedOut)

        source.push(event(.new, port: 1, mark: 0x101), event(.new, port: 2, mark: 0x200), event(.update, port: 1, mark: 0x1ff))
        source.pushOverrun()
        source.push(event(.destroy, port: 1, mark: 0x101))
        XCTAssertEqual(try source.receive(into: &events, timeoutMilliseconds: 10), .received)
        XCTAssertEqual(events.map(\.original.source.port), [1, 1], "the other mark is filtered; two events per receive")
        XCTAssertEqual(try source.receive(into: &events, timeoutMilliseconds: 10), .overrun)
        XCTAssertEqual(events, [])
        XCTAssertEqual(try source.receive(into: &events, timeoutMilliseconds: 10), .received)
        XCTAssertEqual(events.map(\.kind), [.destroy])
        XCTAssertEqual(source.counters.received, 3)
        XCTAssertEqual(source.counters.filtered, 1)
        XCTAssertEqual(source.counters.overruns, 1)

        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(20)) { source.interrupt() }
        XCTAssertEqual(try source.receive(into: &events, timeoutMilliseconds: 5000), .interrupted)
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(20)) { source.push(self.event(.new, port: 3, mark: 0x100)) }
        XCTAssertEqual(try source.receive(into: &events, timeoutMilliseconds: 5000), .received, "a push wakes a blocked receive")
        XCTAssertEqual(events.map(\.original.source.port), [3])
    }

    func testDumpReturnsTheTablesEntriesOfTheMarkAsUpdates() throws {
        let source = try InMemoryConntrackEvents()
        source.table = [event(.new, port: 1, mark: 0x101), event(.new, port: 2, mark: 0x200)]
        let dumped = try source.dump(markValue: 0x100, markMask: 0xf00)
        XCTAssertEqual(dumped.map(\.original.source.port), [1])
        XCTAssertEqual(dumped.map(\.kind), [.update])
        XCTAssertEqual(try source.dump(markValue: 0, markMask: 0).count, 2)
        XCTAssertThrowsError(try source.dump(markValue: 1, markMask: 0xf00))
        XCTAssertEqual(source.dumpCount, 2)
    }
}
