import Glibc
import Kernel
import KernelTesting
import RedirectCore
import XCTest

@testable import Daemon

/// Datapath threads on in-memory queues: the real worker loop, engine and shared table, with
/// the kernel replaced by `InMemoryPacketQueue` (the same batches and verdict messages).
final class DatapathWorkerTests: XCTestCase {
    private let client = Endpoint(IPAddress("192.0.2.2")!, 40000)
    private let server = Endpoint(IPAddress("203.0.113.10")!, 80)
    private let proxy = Endpoint(IPAddress("192.0.2.1")!, 8080)
    private let rules = SnapshotBox(
        DatapathRules(
            policy: RedirectPolicy(rules: [try! RedirectRule(parsing: "tcp:80:8080", scope: .network)]),
            addresses: RedirectAddressBook([InterfaceAddress(interfaceIndex: 2, address: IPAddress("192.0.2.1")!, prefixLength: 24)])))

    private let syn: UInt8 = 0x02, ack: UInt8 = 0x10

    /// Waits (bounded) until `queue` has decided `count` packets.
    private func verdicts(_ queue: InMemoryPacketQueue, count: Int) -> [InMemoryPacketQueue.VerdictRecord] {
        let deadline = monotonicMilliseconds() + 5000
        while queue.verdicts.count < count && monotonicMilliseconds() < deadline { usleep(1000) }
        return queue.verdicts
    }

    private func startWorkers(_ pairs: [(InMemoryPacketQueue, PacketMetadata.Direction)], table: FlowTable) -> ([DatapathWorker], [pthread_t]) {
        let workers = pairs.map { queue, direction in
            DatapathWorker(queue: queue, direction: direction, table: table, rules: rules, clock: { 100 }, logger: .init(label: "test"))
        }
        let threads = workers.map { worker in startThread(name: "test-datapath") { worker.run() } }
        return (workers, threads)
    }

    private func stop(_ workers: [DatapathWorker], _ threads: [pthread_t]) {
        for worker in workers { worker.stop() }
        for thread in threads { pthread_join(thread, nil) }
    }

    func testTwoDirectionsOnTwoThreadsShareOneTable() throws {
        let table = try FlowTable(configuration: FlowTableConfiguration(limit: 1024, shardCount: 1, timeouts: FlowTimeouts(), seed: 1))
        let original = try InMemoryPacketQueue(queueNumber: 0)
        let replies = try InMemoryPacketQueue(queueNumber: 1)
        let (workers, threads) = startWorkers([(original, .original), (replies, .reply)], table: table)
        defer { stop(workers, threads) }

        original.enqueue(segment(from: client, to: server, flags: syn), hook: .preRouting, inputInterface: 2)
        let first = verdicts(original, count: 1)
        XCTAssertEqual(first.map(\.verdict), [.acceptModified])
        XCTAssertEqual(first.first.map(\.bytes), segment(from: client, to: proxy, flags: syn), "rewritten to the proxy, checksums exact")

        replies.enqueue(segment(from: proxy, to: client, flags: syn | ack), hook: .localOut)
        let answer = verdicts(replies, count: 1)
        XCTAssertEqual(answer.map(\.verdict), [.acceptModified])
        XCTAssertEqual(answer.first.map(\.bytes), segment(from: server, to: client, flags: syn | ack), "the client sees the server")

        // A burst larger than one batch: every packet gets exactly one verdict, in order.
        let burst = (0..<200).map { i in segment(from: client, to: server, flags: ack, payload: [UInt8(i & 0xff)]) }
        let ids = burst.map { original.enqueue($0, hook: .preRouting, inputInterface: 2) }
        let all = verdicts(original, count: 201)
        XCTAssertEqual(all.dropFirst().map(\.id), ids)
        XCTAssertTrue(all.allSatisfy { $0.verdict == .acceptModified })
        XCTAssertEqual(table.lookup(proto: .tcp, client: client, local: proxy, now: 100), .redirected(original: server))
        XCTAssertEqual(original.awaitingVerdict + replies.awaitingVerdict, 0, "nothing left waiting in the kernel")
    }

    func testQueueErrorsAreCountedAndTheWorkerCarriesOn() throws {
        let table = try FlowTable(configuration: FlowTableConfiguration(limit: 1024, shardCount: 1, timeouts: FlowTimeouts(), seed: 1))
        let queue = try InMemoryPacketQueue(queueNumber: 0)
        let (workers, threads) = startWorkers([(queue, .original)], table: table)
        defer { stop(workers, threads) }

        queue.enqueueNoBufferSpace()
        queue.enqueueNetlinkError()
        let truncated = segment(from: client, to: server, flags: syn)
        queue.enqueue(Array(truncated.prefix(30)), hook: .preRouting, inputInterface: 2, packetLength: truncated.count)
        queue.enqueue(segment(from: client, to: server, flags: syn), hook: .preRouting, inputInterface: 2)
        let decided = verdicts(queue, count: 2).sorted { $0.id < $1.id }
        XCTAssertEqual(decided.map(\.verdict), [.accept, .acceptModified], "a truncated copy passes unrewritten; the next flow works")
        XCTAssertEqual(workers[0].truncatedCaptures.load, 1)
        let counters = queue.counters
        XCTAssertEqual(counters.noBufferSpace, 1)
        XCTAssertEqual(counters.netlinkErrors, 1)
    }

    func testARuleSwapReachesTheNextBatch() throws {
        let table = try FlowTable(configuration: FlowTableConfiguration(limit: 1024, shardCount: 1, timeouts: FlowTimeouts(), seed: 1))
        let queue = try InMemoryPacketQueue(queueNumber: 0)
        let (workers, threads) = startWorkers([(queue, .original)], table: table)
        defer { stop(workers, threads) }

        queue.enqueue(segment(from: client, to: server, flags: syn), hook: .preRouting, inputInterface: 2)
        XCTAssertEqual(verdicts(queue, count: 1).last?.verdict, .acceptModified)
        rules.update { $0.replacingPolicy(RedirectPolicy(rules: [])) }
        let other = Endpoint(IPAddress("192.0.2.3")!, 40001)
        queue.enqueue(segment(from: other, to: server, flags: syn), hook: .preRouting, inputInterface: 2)
        queue.enqueue(segment(from: client, to: server, flags: ack), hook: .preRouting, inputInterface: 2)
        // Sorted by packet: a batch's rewrites are sent before its one batch accept.
        let decided = verdicts(queue, count: 3).sorted { $0.id < $1.id }
        XCTAssertEqual(
            decided.map(\.verdict), [.acceptModified, .accept, .acceptModified],
            "a new flow follows the new rules; the established one keeps its mapping")
    }
}
