import Glibc
import Kernel
import KernelTesting
import RedirectCore
import XCTest

@testable import Daemon

/// Kernel-nat mode end to end in memory: the real worker marks a first packet (the mark in the
/// verdict message the kernel would read), and the real conntrack thread keeps the table
/// current from events of the fake conntrack: state and timer, destroy, adoption, overrun.
final class KernelNATDatapathTests: XCTestCase {
    private let client = Endpoint(IPAddress("192.0.2.2")!, 40000)
    private let server = Endpoint(IPAddress("203.0.113.10")!, 80)
    private let proxy = Endpoint(IPAddress("192.0.2.1")!, 8080)
    private let mask: UInt32 = 0x0ff0_0000
    private lazy var rules = SnapshotBox(
        DatapathRules(
            policy: RedirectPolicy(rules: [try! RedirectRule(parsing: "tcp:80:8080", scope: .network)]),
            addresses: RedirectAddressBook([InterfaceAddress(interfaceIndex: 2, address: IPAddress("192.0.2.1")!, prefixLength: 24)]),
            kernelNAT: KernelNATMarks(mask: mask, ports: [8080])))

    private func waitFor(_ condition: () -> Bool) -> Bool {
        let deadline = monotonicMilliseconds() + 5000
        while !condition() && monotonicMilliseconds() < deadline { usleep(1000) }
        return condition()
    }

    private func event(_ kind: ConntrackEvent.Kind, _ state: ConntrackTCPState?, status: ConntrackStatus = [], timeout: UInt32? = 120)
        -> ConntrackEvent
    {
        ConntrackEvent(
            kind: kind, original: FlowTuple(proto: .tcp, source: client, destination: server),
            reply: FlowTuple(proto: .tcp, source: proxy, destination: client), tcpState: state, mark: 0x0010_0000,
            status: status, timeout: kind == .destroy ? nil : timeout)
    }

    /// A table, the in-memory conntrack source (with the daemon's negated mark filter) and the
    /// sync that keeps the one current from the other, on `clock`.
    private func makeSync(shardCount: Int = 1, clock: @escaping @Sendable () -> UInt32 = { 100 }) throws -> (
        FlowTable, InMemoryConntrackEvents, ConntrackSync
    ) {
        let table = try FlowTable(configuration: FlowTableConfiguration(limit: 1024, shardCount: shardCount, seed: 1))
        let events = try InMemoryConntrackEvents(markValue: 0, markMask: mask, negated: true)
        let sync = ConntrackSync(source: events, table: table, rules: rules, resyncSeconds: 30, clock: clock, logger: .init(label: "test"))
        return (table, events, sync)
    }

    func testAFirstPacketIsMarkedAndConntrackEventsCarryTheFlowToItsEnd() throws {
        let (table, events, sync) = try makeSync()
        let queue = try InMemoryPacketQueue(queueNumber: 0)
        let worker = DatapathWorker(queue: queue, direction: .original, table: table, rules: rules, clock: { 100 }, logger: .init(label: "test"))
        let threads = [startThread(name: "test-datapath") { worker.run() }, startThread(name: "test-conntrack") { sync.run() }]
        defer {
            worker.stop()
            sync.stop()
            for thread in threads { pthread_join(thread, nil) }
        }

        queue.enqueue(segment(from: client, to: server, flags: 0x02), hook: .preRouting, inputInterface: 2, mark: 0xf000_0001)
        XCTAssertTrue(waitFor { queue.verdicts.count == 1 })
        XCTAssertEqual(queue.verdicts.first?.verdict, .acceptMarked)
        XCTAssertEqual(queue.verdicts.first?.mark, 0xf010_0001, "the port's value inside the mask, the packet's other bits kept")
        XCTAssertEqual(queue.verdicts.first?.bytes, segment(from: client, to: server, flags: 0x02), "not rewritten")
        XCTAssertEqual(worker.engine.counters.markedOriginal.load, 1)

        events.push(event(.new, .synSent), event(.update, .synReceived, status: [.seenReply]))
        events.push(event(.update, .established, status: [.seenReply, .assured], timeout: 432_000))
        XCTAssertTrue(waitFor { table.records(now: 100).first?.state == .established })
        XCTAssertEqual(table.records(now: 100).first?.expires, 100 + 432_000 + 60, "the kernel's timeout plus two resync intervals")
        XCTAssertEqual(table.lookup(proto: .tcp, client: client, local: proxy, now: 100), .redirected(original: server))
        // Unmarked entries never reach the thread (the kernel-side filter; the fake filters too).
        var other = event(.new, .synSent)
        other.mark = 0
        other.original.source.port = 40001
        events.push(other)
        events.push(event(.destroy, nil))
        XCTAssertTrue(waitFor { table.count == 0 })
        XCTAssertEqual(table.lookup(proto: .tcp, client: client, local: proxy, now: 100), .expired(.expired))
        XCTAssertEqual(sync.removed.load, 1)

        // Events lost: the thread reads the entries again; a flow the table did not have is entered.
        events.table = [event(.update, .established, status: [.seenReply, .assured])]
        let dumpsBefore = events.dumpCount
        events.pushOverrun()
        XCTAssertTrue(waitFor { events.dumpCount > dumpsBefore && table.count == 1 })
        XCTAssertEqual(sync.adopted.load, 1)
        XCTAssertEqual(table.records(now: 100).first?.state, .established)
    }

    func testAResyncRemovesFlowsTheKernelNoLongerHas() throws {
        let now = AtomicCounter()
        now.add(100)
        let (table, _, sync) = try makeSync(clock: { UInt32(now.load) })
        _ = table.handleOriginal(FlowTuple(proto: .tcp, source: client, destination: server), tcpFlags: [.syn], length: 60, now: 100) { _ in
            .redirect(to: self.proxy)
        }
        now.add(4)
        sync.resync(.periodic)
        XCTAssertEqual(table.count, 1, "a first packet still on its way to confirmation is not judged")
        now.add(2)
        sync.resync(.periodic)
        XCTAssertEqual(table.count, 0, "its first packet never got through, or its end was not heard")
        XCTAssertEqual(sync.removedUnheard.load, 1)
    }

    func testALookupPastTheKernelsTimeoutAsksTheKernel() throws {
        let now = AtomicCounter()
        now.add(100)
        let (table, events, sync) = try makeSync(clock: { UInt32(now.load) })
        sync.apply(event(.update, .established, status: [.seenReply, .assured], timeout: 3), now: 100)
        XCTAssertFalse(table.kernelExpiryPassed(proto: .tcp, client: client, local: proxy, now: 102))
        XCTAssertTrue(table.kernelExpiryPassed(proto: .tcp, client: client, local: proxy, now: 103))
        // The kernel refreshed it without telling: still there, with a new timeout.
        events.table = [event(.update, .established, status: [.seenReply, .assured], timeout: 3)]
        now.add(3)
        sync.verify(proto: .tcp, client: client, local: proxy)
        XCTAssertFalse(table.kernelExpiryPassed(proto: .tcp, client: client, local: proxy, now: 103))
        XCTAssertEqual(table.lookup(proto: .tcp, client: client, local: proxy, now: 103), .redirected(original: server))
        // Now it is gone from the kernel: the lookup says so.
        events.table = []
        now.add(3)
        sync.verify(proto: .tcp, client: client, local: proxy)
        XCTAssertEqual(table.lookup(proto: .tcp, client: client, local: proxy, now: 106), .expired(.expired))
        XCTAssertEqual(sync.verified.load, 2)
    }

    func testAClientPortTheKernelsNATChangedKeysTheFlowAsTheProxySeesIt() throws {
        let (table, _, sync) = try makeSync(shardCount: 4)
        _ = table.handleOriginal(FlowTuple(proto: .tcp, source: client, destination: server), tcpFlags: [.syn], length: 60, now: 100) { _ in
            .redirect(to: self.proxy)
        }
        // The proxy still had a connection from the client's port: the kernel's implicit source
        // NAT gave this one port 61000 on the proxy's side.
        let seen = Endpoint(client.address, 61000)
        var new = event(.new, .synSent)
        new.reply = FlowTuple(proto: .tcp, source: proxy, destination: seen)
        sync.apply(new, now: 100)
        XCTAssertEqual(table.lookup(proto: .tcp, client: seen, local: proxy, now: 100), .redirected(original: server))
        XCTAssertEqual(table.lookup(proto: .tcp, client: client, local: proxy, now: 100), .expired(.expired))
        XCTAssertEqual(table.count, 1)
        var gone = event(.destroy, nil)
        gone.reply = new.reply
        sync.apply(gone, now: 101)
        XCTAssertEqual(table.count, 0, "its end is found under the same key")
    }
}
