import Foundation
import KernelTesting
import RedirectCore
import SeededRandom
import XCTest

@testable import Kernel

final class InMemoryPacketQueueTests: XCTestCase {
    func testPacketsRoundTripWithRewritesDropsAndAccepts() throws {
        let queue = try InMemoryPacketQueue(queueNumber: 3, batchCapacity: 4)
        let a = queue.enqueue([0x45, 1, 2, 3], hook: .preRouting, inputInterface: 2, mark: 9, checksumNotReady: true)
        let b = queue.enqueue([0x45, 4, 5, 6])
        let c = queue.enqueue([0x60, 7, 8, 9])
        let batch = queue.makeBatch()
        XCTAssertEqual(try queue.receive(into: batch, timeoutMilliseconds: 0), .received)
        XCTAssertEqual(batch.count, 3)
        XCTAssertEqual(batch[0].id, a)
        XCTAssertEqual(batch[0].netfilterHook, .preRouting)
        XCTAssertEqual(batch[0].inputInterface, 2)
        XCTAssertEqual(batch[0].mark, 9)
        XCTAssertTrue(batch[0].checksumNotReady)
        XCTAssertEqual(batch[2].hardwareProtocol, 0x86dd)
        batch[0].payload[3] = 0xff
        batch[0].verdict = .acceptModified
        batch[1].verdict = .drop
        try queue.sendVerdicts(for: batch)
        XCTAssertEqual(
            queue.verdicts,
            [
                .init(id: a, verdict: .acceptModified, bytes: [0x45, 1, 2, 0xff]),
                .init(id: b, verdict: .drop, bytes: []),
                .init(id: c, verdict: .accept, bytes: [0x60, 7, 8, 9]),
            ])
        XCTAssertEqual(queue.awaitingVerdict, 0)
        XCTAssertEqual(batch.count, 0)
        let counters = queue.counters
        XCTAssertEqual(
            [counters.received, counters.batches, counters.acceptedModified, counters.dropped, counters.acceptedUnmodified], [3, 1, 1, 1, 1])
    }

    func testTheBatchIsFilledUpToItsCapacity() throws {
        let queue = try InMemoryPacketQueue(batchCapacity: 2)
        for index in 0..<5 { queue.enqueue([0x45, UInt8(index)]) }
        let batch = queue.makeBatch()
        var sizes: [Int] = []
        while try queue.receive(into: batch, timeoutMilliseconds: 0) == .received {
            sizes.append(batch.count)
            try queue.sendVerdicts(for: batch)
        }
        XCTAssertEqual(sizes, [2, 2, 1])
        XCTAssertEqual(queue.verdicts.map(\.id), [1, 2, 3, 4, 5])
    }

    func testErrorsAreCountedAndUnparsablePacketsGetThePolicyVerdict() throws {
        for policy in [UnparsablePacketPolicy.accept, .drop] {
            let queue = try InMemoryPacketQueue(unparsablePacketPolicy: policy)
            queue.enqueueNoBufferSpace()
            queue.enqueueNetlinkError()
            let id = queue.enqueueUnparsableMessage(hasID: true)
            queue.enqueueUnparsableMessage(hasID: false)
            queue.enqueue([0x45])
            let batch = queue.makeBatch()
            XCTAssertEqual(try queue.receive(into: batch, timeoutMilliseconds: 0), .received)
            XCTAssertEqual(batch.count, 1)
            try queue.sendVerdicts(for: batch)
            XCTAssertEqual(queue.verdicts.first { $0.id == id }?.verdict, policy == .accept ? .accept : .drop)
            XCTAssertEqual(queue.awaitingVerdict, 0)
            let counters = queue.counters
            XCTAssertEqual([counters.noBufferSpace, counters.netlinkErrors, counters.parseErrors], [1, 1, 2])
        }
    }

    func testReceiveTimesOutAndWakesForInterruptsAndNewPackets() throws {
        let queue = try InMemoryPacketQueue()
        let batch = queue.makeBatch()
        XCTAssertEqual(try queue.receive(into: batch, timeoutMilliseconds: 10), .timedOut)
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(20)) { queue.interrupt() }
        XCTAssertEqual(try queue.receive(into: batch, timeoutMilliseconds: 5000), .interrupted)
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(20)) { queue.enqueue([0x45]) }
        XCTAssertEqual(try queue.receive(into: batch, timeoutMilliseconds: 5000), .received)
        XCTAssertEqual(batch.count, 1)
    }

    /// Whatever mix of verdicts the engine sets, with or without batch verdicts, the kernel
    /// ends up applying exactly that verdict to every packet and to no other.
    func testRandomVerdictMixesAreAppliedExactly() throws {
        var generator = SplitMix64(seed: 2024)
        for round in 0..<300 {
            let batchVerdicts = round % 2 == 0
            let queue = try InMemoryPacketQueue(batchCapacity: 16, batchVerdicts: batchVerdicts)
            let batch = queue.makeBatch()
            var expected: [UInt32: (Verdict, [UInt8])] = [:]
            for _ in 0..<(1 + Int(generator.next() % 3)) {
                let count = 1 + Int(generator.next() % 16)
                for _ in 0..<count { queue.enqueue((0..<(1 + Int(generator.next() % 9))).map { _ in UInt8(truncatingIfNeeded: generator.next()) }) }
                XCTAssertEqual(try queue.receive(into: batch, timeoutMilliseconds: 0), .received)
                for index in 0..<batch.count {
                    let verdict = [Verdict.accept, .acceptModified, .drop][Int(generator.next() % 3)]
                    if verdict == .acceptModified { batch[index].payload[0] ^= 0xff }
                    batch[index].verdict = verdict
                    expected[batch[index].id] = (verdict, verdict == .drop ? [] : Array(batch[index].payload))
                }
                try queue.sendVerdicts(for: batch)
            }
            let applied = queue.verdicts
            XCTAssertEqual(applied.count, expected.count)
            for record in applied {
                XCTAssertEqual(record.verdict, expected[record.id]?.0, "round \(round) id \(record.id)")
                XCTAssertEqual(record.bytes, expected[record.id]?.1, "round \(round) id \(record.id)")
            }
            XCTAssertEqual(queue.counters.netlinkErrors, 0)
        }
    }
}
