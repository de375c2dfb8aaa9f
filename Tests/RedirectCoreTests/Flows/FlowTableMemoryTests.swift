import XCTest

@testable import RedirectCore

final class FlowTableMemoryTests: XCTestCase {
    func testSlotLayout() {
        XCTAssertEqual(MemoryLayout<FlowSlot>.stride, 96)
    }

    /// At one million flows the table (slabs, both indexes, tombstones) costs at most 128 bytes a flow.
    func testBytesPerFlowAtOneMillionFlows() throws {
        let limit = 1 << 20
        let table = try FlowTable(configuration: FlowTableConfiguration(limit: limit, seed: 3))
        let bytesPerFlow = Double(table.storageBytes) / Double(limit)
        print("flow table storage: \(table.storageBytes) bytes for \(limit) flows in \(table.shardCount) shards = \(bytesPerFlow) bytes/flow")
        XCTAssertLessThanOrEqual(bytesPerFlow, 128)

        // And the table really holds that many: no shard fills up before the table does.
        var refused = 0
        for i in 0..<limit {
            if case .refused = table.original(.udp(Fixture.client(i), Fixture.server), now: 1) { refused += 1 }
        }
        XCTAssertEqual(refused, 0)
        XCTAssertEqual(table.count, limit)
        XCTAssertEqual(table.statistics.destroyedEvicted, 0)
        XCTAssertEqual(table.original(.udp(Fixture.client(limit), Fixture.server), now: 1), .rewriteDestination(Fixture.proxy))
        XCTAssertEqual(table.statistics.destroyedEvicted, 1)
    }

    func testConfigurationIsValidated() {
        XCTAssertThrowsError(try FlowTable(configuration: FlowTableConfiguration(limit: 0))) { error in
            XCTAssertEqual("\(error)", "flow table limit 0 is out of range 1...1073741824")
        }
        var timeouts = FlowTimeouts()
        timeouts.close = 0
        XCTAssertThrowsError(try FlowTable(configuration: FlowTableConfiguration(timeouts: timeouts))) { error in
            XCTAssertEqual(error as? FlowTableConfigurationError, .zeroTimeout(.close))
        }
        XCTAssertThrowsError(try FlowTable(configuration: FlowTableConfiguration(shardCount: 0)))
        XCTAssertThrowsError(try FlowTable(configuration: FlowTableConfiguration(eventCapacity: -1)))
    }

    func testSmallTablesUseFewerShards() throws {
        XCTAssertEqual(try FlowTable(configuration: FlowTableConfiguration(limit: 100)).shardCount, 1)
        XCTAssertEqual(try FlowTable(configuration: FlowTableConfiguration(limit: 4096)).shardCount, 16)
        XCTAssertEqual(try FlowTable(configuration: FlowTableConfiguration()).shardCount, 64)
    }
}
