import Foundation
import XCTest

@testable import Daemon
@testable import RedirectCore

/// `nfq-redirect stats --json` (labels as fields, never in key names) and the wall-clock
/// times of `nfq-redirect events`, as the lookup service encodes them.
final class StatisticsAndEventsEncodingTests: XCTestCase {
    private func sampleReport() -> DaemonStatistics {
        var report = DaemonStatistics()
        report.gauge("nfqr_build_info", 1, labels: [("version", "1.2.3 \"quoted\"\\")])
        report.counter("nfqr_packets_total", 42)
        report.counter("nfqr_packet_errors_total", 3, labels: [("reason", "truncated"), ("action", "drop")])
        report.gauge("nfqr_flows", 7)
        let histogram = LatencyHistogram()
        histogram.record(nanoseconds: 800)
        histogram.record(.milliseconds(7))
        report.histogram("nfqr_lookup_seconds", histogram.snapshot)
        return report
    }

    private func decode(_ line: String) throws -> [String: Any] {
        try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], line)
    }

    func testStatisticsJSONCarriesLabelsAsFields() throws {
        // 2026-12-06T15:28:08.123456Z
        let document = try decode(sampleReport().json(timestamp: 1_796_570_888_123_456_789))
        XCTAssertEqual(document["timestamp"] as? String, "2026-12-06T15:28:08.123456Z")
        let metrics = try XCTUnwrap(document["metrics"] as? [[String: Any]])
        XCTAssertEqual(metrics.count, 5)
        for metric in metrics {
            let name = try XCTUnwrap(metric["name"] as? String)
            XCTAssertTrue(name.allSatisfy { $0.isLetter || $0.isNumber || $0 == "_" }, "no labels in a name: \(name)")
            XCTAssertNotNil(metric["labels"] as? [String: String], name)
        }
        let errors = try XCTUnwrap(metrics.first { $0["name"] as? String == "nfqr_packet_errors_total" })
        XCTAssertEqual(errors["labels"] as? [String: String], ["reason": "truncated", "action": "drop"])
        XCTAssertEqual(errors["value"] as? Int, 3)
        XCTAssertEqual(errors["type"] as? String, "counter")
        let build = try XCTUnwrap(metrics.first { $0["name"] as? String == "nfqr_build_info" })
        XCTAssertEqual(build["labels"] as? [String: String], ["version": "1.2.3 \"quoted\"\\"], "escaped and decoded back")
        XCTAssertEqual(build["type"] as? String, "gauge")
        let flows = try XCTUnwrap(metrics.first { $0["name"] as? String == "nfqr_flows" })
        XCTAssertEqual(flows["labels"] as? [String: String], [:])
        XCTAssertEqual(flows["value"] as? Int, 7)

        let histogram = try XCTUnwrap(metrics.first { $0["type"] as? String == "histogram" })
        XCTAssertEqual(histogram["count"] as? Int, 2)
        XCTAssertEqual(try XCTUnwrap(histogram["sum"] as? Double), 0.0070008, accuracy: 1e-12)
        let buckets = try XCTUnwrap(histogram["buckets"] as? [[String: Any]])
        XCTAssertEqual(buckets.count, LatencyHistogram.boundsNanoseconds.count)
        XCTAssertEqual(buckets.first?["le"] as? Double, 0.000001)
        XCTAssertEqual(buckets.first?["count"] as? Int, 1)
        XCTAssertEqual(buckets.last?["count"] as? Int, 2, "cumulative")
    }

    func testStatisticsTextKeepsPrometheusSeries() {
        let lines = sampleReport().textLines
        XCTAssertTrue(lines.contains("nfqr_packet_errors_total{reason=\"truncated\",action=\"drop\"} 3"))
        XCTAssertTrue(lines.contains("nfqr_packets_total 42"))
        XCTAssertTrue(lines.contains("nfqr_lookup_seconds_count 2"))
    }

    func testRFC3339() {
        XCTAssertEqual(WallClock.rfc3339(nanosecondsSinceEpoch: 0), "1970-01-01T00:00:00.000000Z")
        XCTAssertEqual(WallClock.rfc3339(nanosecondsSinceEpoch: 951_782_400_000_001_000), "2000-02-29T00:00:00.000001Z")
        XCTAssertEqual(WallClock.rfc3339(nanosecondsSinceEpoch: 1_796_570_888_999_999_999), "2026-12-06T15:28:08.999999Z")
        XCTAssertEqual(WallClock.rfc3339(nanosecondsSinceEpoch: -1_000), "1969-12-31T23:59:59.999999Z")
    }

    func testEventTimesAreTheCollectionTimeOrTheEndOfTheirSecond() {
        let reading = WallClock.Reading(realtimeNanoseconds: 1_000_000_000_500_000_000, monotonicNanoseconds: 100_500_000_000)
        // Happened in the second being collected: the collection time itself.
        XCTAssertEqual(WallClock.estimate(monotonicSecond: 100, collectedAt: reading), 1_000_000_000_500_000_000)
        // Two seconds earlier (events waiting in the ring): the last nanosecond of that second.
        XCTAssertEqual(WallClock.estimate(monotonicSecond: 98, collectedAt: reading), 1_000_000_000_500_000_000 - 1_500_000_001)
        // The real clocks, read together, give now.
        let now = WallClock.Reading.now()
        let second = UInt32(now.monotonicNanoseconds / 1_000_000_000)
        XCTAssertEqual(WallClock.estimate(monotonicSecond: second, collectedAt: now), now.realtimeNanoseconds)
    }

    func testEventLinesCarryTheWallClockInTextAndJSON() throws {
        let record = FlowRecord(
            proto: .tcp, client: Endpoint(IPAddress("192.0.2.2")!, 40000),
            originalDestination: Endpoint(IPAddress("203.0.113.10")!, 80),
            redirectTarget: Endpoint(IPAddress("192.0.2.1")!, 8080), state: .established, created: 10, expires: 100)
        let event = FlowEvent(kind: .destroyed(.closed), time: 12, record: record, shard: 0, sequence: 1)
        let timestamp: Int64 = 1_796_570_888_123_456_789
        let text = FlowFormatting.line(for: event, timestamp: timestamp, format: .text)
        XCTAssertTrue(text.hasPrefix("2026-12-06T15:28:08.123456Z [DESTROY closed] tcp "), text)
        let json = try decode(FlowFormatting.line(for: event, timestamp: timestamp, format: .json))
        XCTAssertEqual(json["timestamp"] as? String, "2026-12-06T15:28:08.123456Z")
        XCTAssertEqual(json["time"] as? Int, 12, "the table's monotonic time is kept")
        XCTAssertEqual(json["event"] as? String, "destroy")
        XCTAssertEqual(json["reason"] as? String, "closed")
    }
}
