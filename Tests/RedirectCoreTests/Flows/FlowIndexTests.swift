import SeededRandom
import XCTest

@testable import RedirectCore

/// The open-addressing index on its own, with hashes chosen to force long probe runs that wrap
/// around the end of the buckets, so backward-shift deletion is exercised in every case.
final class FlowIndexTests: XCTestCase {
    /// Hash whose home bucket is `bucket` in an index of `capacity` buckets.
    private func hash(home bucket: Int, capacity: Int, salt: UInt32) -> UInt32 {
        let base = UInt32((UInt64(bucket) << 32 + UInt64(capacity) - 1) / UInt64(capacity))
        return base &+ salt % 16
    }

    func testRandomInsertsAndRemovalsAgreeWithAModel() {
        var random = SplitMix64(seed: 7)
        for capacity in [2, 3, 8, 13, 64] {
            var index = FlowIndex(capacity: capacity)
            var model: [UInt32: UInt32] = [:]  // slot -> hash
            for _ in 0..<4000 {
                let slot = UInt32(random.next() % UInt64(capacity * 2))
                if let existing = model[slot] {
                    XCTAssertTrue(index.remove(hash: existing, slot: slot))
                    model[slot] = nil
                } else if model.count < capacity - 1 {
                    // Homes crowd into a few buckets near the end so runs wrap around.
                    let home = capacity - 1 - Int(random.next() % UInt64(min(3, capacity)))
                    let h = hash(home: home, capacity: capacity, salt: UInt32(truncatingIfNeeded: random.next()))
                    index.insert(hash: h, slot: slot)
                    model[slot] = h
                }
                for (slot, h) in model {
                    XCTAssertEqual(index.find(hash: h) { $0 == slot }, slot, "capacity \(capacity)")
                }
                var entries = 0
                index.forEachEntry { h, slot in
                    entries += 1
                    XCTAssertEqual(model[slot], h)
                }
                XCTAssertEqual(entries, model.count)
            }
        }
    }

    func testRemovingAnAbsentEntryChangesNothing() {
        var index = FlowIndex(capacity: 4)
        index.insert(hash: 5, slot: 1)
        XCTAssertFalse(index.remove(hash: 5, slot: 2))
        XCTAssertFalse(index.remove(hash: 6, slot: 1))
        XCTAssertEqual(index.find(hash: 5) { $0 == 1 }, 1)
    }

    func testTheTupleHashSpreadsFlowsEvenlyOverShardsAndBuckets() {
        // Sequential clients (the easiest pattern for an attacker to produce) must still spread.
        let hasher = FlowHasher(seed: 1234)
        let shards = 64
        var perShard = [Int](repeating: 0, count: shards)
        let flows = 64 * 1024
        for i in 0..<flows {
            let h = hasher.clientHash(proto: .tcp, client: Fixture.client(i))
            perShard[Int(((h >> 32) * UInt64(shards)) >> 32)] += 1
        }
        // Mean 1024, standard deviation about 32: all shards within 6 deviations.
        XCTAssertLessThan(perShard.max()! - 1024, 192, "\(perShard)")
        XCTAssertLessThan(1024 - perShard.min()!, 192, "\(perShard)")
        // Different keys place the same tuple differently.
        let other = FlowHasher(seed: 1235)
        let same = (0..<1000).filter {
            hasher.clientHash(proto: .tcp, client: Fixture.client($0)) == other.clientHash(proto: .tcp, client: Fixture.client($0))
        }
        XCTAssertEqual(same, [])
    }
}
