import Glibc
import Kernel
import RedirectCore
import XCTest
@testable import Daemon

/// An in-memory `NativeAnswerMap`: what the BPF hook's map holds, without a kernel.
final class InMemoryNativeAnswerMap: NativeAnswerMap, @unchecked Sendable {
    private let entries = Locked<[NativeAnswerPair: Endpoint]>([:])
    var failNextPut = false

    var snapshot: [NativeAnswerPair: Endpoint] { entries.withLock { $0 } }

    func put(local: Endpoint, peer: Endpoint, originalDestination: Endpoint) -> CInt {
        if failNextPut {
            failNextPut = false
            return E2BIG
        }
        entries.withLock { $0[NativeAnswerPair(local: local, peer: peer)] = originalDestination }
        return 0
    }

    func remove(local: Endpoint, peer: Endpoint) -> CInt {
        entries.withLock { $0.removeValue(forKey: NativeAnswerPair(local: local, peer: peer)) } == nil ? ENOENT : 0
    }

    func pairs() -> [NativeAnswerPair] { entries.withLock { Array($0.keys) } }

    func answer(local: Endpoint, peer: Endpoint) -> Endpoint? {
        entries.withLock { $0[NativeAnswerPair(local: local, peer: peer)] }
    }
}

final class NativeAnswerPublisherTests: XCTestCase {
    let client = Endpoint(IPAddress(ipv4: 0xC000_0202), 40000)
    let origin = Endpoint(IPAddress(ipv4: 0xCB00_710A), 80)
    let proxy = Endpoint(IPAddress(ipv4: 0xC000_0201), 8080)

    private func makeTable(_ publisher: NativeAnswerPublisher) -> FlowTable {
        try! FlowTable(configuration: FlowTableConfiguration(limit: 1024, shardCount: 1, seed: 7), observer: publisher)
    }

    private func syn(_ table: FlowTable, _ proto: TransportProtocol, from client: Endpoint, to destination: Endpoint) {
        _ = table.handleOriginal(
            FlowTuple(proto: proto, source: client, destination: destination), tcpFlags: proto == .tcp ? .syn : [],
            length: 60, now: 1) { [proxy] _ in .redirect(to: proxy) }
    }

    func testTheMapHoldsEveryRedirectedTCPFlowAndNothingElse() {
        let publisher = NativeAnswerPublisher()
        let map = InMemoryNativeAnswerMap()
        publisher.publish(into: map)
        let table = makeTable(publisher)
        syn(table, .tcp, from: client, to: origin)
        syn(table, .udp, from: Endpoint(client.address, 5353), to: Endpoint(origin.address, 53))
        XCTAssertEqual(map.snapshot, [NativeAnswerPair(local: proxy, peer: client): origin])
        XCTAssertEqual(publisher.written.load, 1)

        _ = table.handleReply(FlowTuple(proto: .tcp, source: proxy, destination: client), tcpFlags: .rst, length: 40, now: 2)
        table.sweep(now: 1000, budget: 100)
        XCTAssertEqual(map.snapshot, [:])
        XCTAssertEqual(publisher.removed.load, 1)
        XCTAssertEqual(publisher.failed.load, 0)
    }

    func testAFailedWriteIsCountedAndTheFlowStillWorks() {
        let publisher = NativeAnswerPublisher()
        let map = InMemoryNativeAnswerMap()
        map.failNextPut = true
        publisher.publish(into: map)
        let table = makeTable(publisher)
        syn(table, .tcp, from: client, to: origin)
        XCTAssertEqual(publisher.failed.load, 1)
        XCTAssertEqual(table.lookup(proto: .tcp, client: client, local: proxy, now: 1), .redirected(original: origin))
    }

    func testReconcileMakesAnAdoptedMapAgreeWithTheRestoredTable() {
        let publisher = NativeAnswerPublisher()
        let map = InMemoryNativeAnswerMap()
        let stale = NativeAnswerPair(local: proxy, peer: Endpoint(client.address, 40001))
        _ = map.put(local: stale.local, peer: stale.peer, originalDestination: origin)
        _ = map.put(local: proxy, peer: client, originalDestination: Endpoint(origin.address, 81))   // outdated
        let table = makeTable(publisher)
        syn(table, .tcp, from: client, to: origin)   // before publishing: the map did not hear of it
        publisher.publish(into: map)
        XCTAssertEqual(publisher.reconcile(with: table.records(now: 1)), 1)
        XCTAssertEqual(map.snapshot, [NativeAnswerPair(local: proxy, peer: client): origin])
    }

    func testNothingIsPublishedWithoutAMap() {
        let publisher = NativeAnswerPublisher()
        let table = makeTable(publisher)
        syn(table, .tcp, from: client, to: origin)
        XCTAssertEqual(publisher.written.load + publisher.failed.load, 0)
        XCTAssertEqual(publisher.reconcile(with: table.records(now: 1)), 0)
    }
}
