import Dispatch
import SeededRandom
import Synchronization
import XCTest

@testable import RedirectCore

/// Datapath threads, lookup readers and a sweeper on one table at once; afterwards the
/// structures must agree and every thread must have seen only answers consistent with its own flows.
final class FlowTableConcurrencyTests: XCTestCase {
    func testHammeringFromSeveralThreadsKeepsTheTableConsistent() {
        let limit = 8192
        let table = Fixture.table(limit: limit, shards: 16, tombstones: 1024, events: 4096)
        let workers = 4
        let flowsPerWorker = 3000
        let mistakes = Mutex<[String]>([])

        DispatchQueue.concurrentPerform(iterations: workers + 2) { worker in
            var random = SplitMix64(seed: UInt64(worker) + 1)
            if worker == workers {
                // Lookup reader and event drainer over everyone's clients.
                for round in 0..<20_000 {
                    let client = Fixture.client(Int(random.next() % UInt64(workers * flowsPerWorker)))
                    _ = table.lookup(proto: .tcp, client: client, local: Fixture.proxy, now: UInt32(round / 1000))
                    if round % 500 == 0 {
                        _ = table.drainEvents()
                        _ = table.statistics
                    }
                }
                return
            }
            if worker == workers + 1 {
                for round in 0..<2000 { table.sweep(now: UInt32(round / 100), budget: 64) }
                return
            }
            // A datapath thread: full TCP lives for its own clients, plus packets for shared ones.
            let base = worker * flowsPerWorker
            for i in 0..<flowsPerWorker {
                let now = UInt32(i / 200)
                let client = Fixture.client(base + i)
                let tuple = FlowTuple.tcp(client, Fixture.server)
                let reply = FlowTuple.tcp(Fixture.proxy, client)
                let opened = table.original(tuple, .syn, now: now)
                if opened != .rewriteDestination(Fixture.proxy) {
                    if case .refused(.tableFull) = opened { continue }
                    mistakes.withLock { $0.append("worker \(worker) flow \(i): SYN got \(opened)") }
                    continue
                }
                table.reply(reply, [.syn, .ack], now: now)
                table.original(tuple, .ack, now: now)
                let answer = table.lookup(proto: .tcp, client: client, local: Fixture.proxy, now: now)
                // The table is over-subscribed: before its SYN/ACK a flow is not assured, so another
                // worker's SYN may evict it (the kernel's early drop). Saying so is consistent.
                if case .expired(.evicted) = answer { continue }
                if answer != .redirected(original: Fixture.server) {
                    mistakes.withLock { $0.append("worker \(worker) flow \(i): lookup got \(answer)") }
                }
                if random.next() % 2 == 0 {
                    table.original(tuple, [.fin, .ack], now: now)
                    table.reply(reply, [.fin, .ack], now: now)
                    table.original(tuple, .ack, now: now)
                }
                // Contention: a stray packet for another worker's client.
                let stranger = Fixture.client(Int(random.next() % UInt64(workers * flowsPerWorker)))
                table.reply(.tcp(Fixture.proxy, stranger), .ack, now: now)
            }
        }

        XCTAssertEqual(mistakes.withLock { $0 }, [])
        XCTAssertEqual(table.invariantViolations(), [])
        let stats = table.statistics
        XCTAssertLessThanOrEqual(stats.count, limit)
        XCTAssertEqual(table.records(now: 0).count, stats.count)
        let destroyed = FlowEndReason.allCases.reduce(UInt64(0)) { $0 + stats.destroyed($1) }
        XCTAssertEqual(stats.created - destroyed, UInt64(stats.count))
        XCTAssertEqual(stats.created + stats.refusedTableFull, UInt64(workers * flowsPerWorker))
    }
}
