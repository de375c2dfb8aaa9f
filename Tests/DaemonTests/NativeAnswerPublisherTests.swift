import Glibc
import Kernel
import RedirectCore
import XCTest

@testable import Daemon

/// An in-memory `NativeAnswerMap`: what the BPF hook's map holds, without a kernel.
final class InMemoryNativeAnswerMap: NativeAnswerMap, @unchecked Sendable {
    private let entries = Locked<[NativeAnswerPair: Endpoint]>([:])
    var failNextPut = false
    /// Writes held between beginBatch and endBatch, as the BPF hook holds a thread's writes.
    private var holding = false
    private var held: [(NativeAnswerPair, Endpoint)] = []

    var snapshot: [NativeAnswerPair: Endpoint] { entries.withLock { $0 } }

    func put(local: Endpoint, peer: Endpoint, originalDestination: Endpoint) -> CInt {
        if failNextPut {
            failNextPut = false
            return E2BIG
        }
        let pair = NativeAnswerPair(local: local, peer: peer)
        if holding {
            held.removeAll { $0.0 == pair }
            held.append((pair, originalDestination))
        } else {
            entries.withLock { $0[pair] = originalDestination }
        }
        return 0
    }

    func remove(local: Endpoint, peer: Endpoint) -> CInt {
        let pair = NativeAnswerPair(local: local, peer: peer)
        let wasHeld = held.contains { $0.0 == pair }
        held.removeAll { $0.0 == pair }
        return entries.withLock { $0.removeValue(forKey: pair) } == nil && !wasHeld ? ENOENT : 0
    }

    func beginBatch() {
        holding = true
        held = []
    }

    func endBatch(_ written: (NativeAnswerPair, Endpoint) -> Void) -> CInt {
        holding = false
        for (pair, answer) in held { entries.withLock { $0[pair] = answer } }
        for (pair, answer) in held { written(pair, answer) }
        return 0
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
            length: 60, now: 1
        ) { [proxy] _ in .redirect(to: proxy) }
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
        _ = map.put(local: proxy, peer: client, originalDestination: Endpoint(origin.address, 81))  // outdated
        let table = makeTable(publisher)
        syn(table, .tcp, from: client, to: origin)  // before publishing: the map did not hear of it
        publisher.publish(into: map)
        XCTAssertEqual(publisher.reconcile(with: table.records(now: 1)), 1)
        XCTAssertEqual(map.snapshot, [NativeAnswerPair(local: proxy, peer: client): origin])
    }

    func testABatchWritesItsNewFlowsAtItsEndAndNotBefore() {
        let publisher = NativeAnswerPublisher()
        let map = InMemoryNativeAnswerMap()
        publisher.publish(into: map)
        let table = makeTable(publisher)
        let batch = publisher.openBatch()!
        syn(table, .tcp, from: client, to: origin)
        XCTAssertEqual(map.snapshot, [:])
        publisher.closeBatch(batch, table: table, now: 1)
        XCTAssertEqual(map.snapshot, [NativeAnswerPair(local: proxy, peer: client): origin])
    }

    /// Another thread may end a flow whose write this thread still holds (an eviction): the
    /// check after the write takes the entry out again.
    func testAFlowEndedBeforeItsHeldWriteIsNotLeftInTheMap() {
        let publisher = NativeAnswerPublisher()
        let map = InMemoryNativeAnswerMap()
        publisher.publish(into: map)
        let table = makeTable(publisher)
        let batch = publisher.openBatch()!
        syn(table, .tcp, from: client, to: origin)
        publisher.closeBatch(batch, table: table, now: 10_000)  // by then the SYN_SENT flow has expired
        XCTAssertEqual(map.snapshot, [:])
    }

    func testNothingIsPublishedWithoutAMap() {
        let publisher = NativeAnswerPublisher()
        let table = makeTable(publisher)
        syn(table, .tcp, from: client, to: origin)
        XCTAssertEqual(publisher.written.load + publisher.failed.load, 0)
        XCTAssertEqual(publisher.reconcile(with: table.records(now: 1)), 0)
    }
}
