import Foundation
import XCTest

@testable import Daemon

/// The metrics endpoint's text format (Prometheus exposition format 0.0.4), checked line by
/// line as a scraper reads it, and the latency histograms behind it.
final class PrometheusOutputTests: XCTestCase {
    private func sample(_ requests: UInt64, flows: UInt64) -> DaemonStatistics {
        var report = DaemonStatistics()
        report.counter("nfqr_packets_total", requests)
        report.counter("nfqr_verdicts_total", requests / 2, labels: [("verdict", "accept")])
        report.counter("nfqr_verdicts_total", requests / 4, labels: [("verdict", "drop")])
        report.gauge("nfqr_flows", flows)
        let histogram = LatencyHistogram()
        histogram.record(nanoseconds: 800)
        histogram.record(nanoseconds: 3_000)
        histogram.record(.milliseconds(7))
        histogram.record(.seconds(3))
        report.histogram("nfqr_lookup_seconds", histogram.snapshot)
        return report
    }

    /// Parses the exposition text: (family types, samples by series). Fails on any line that
    /// is neither a comment nor `name{labels} value`.
    private func parse(_ text: String) throws -> (types: [String: String], samples: [String: Double]) {
        var types: [String: String] = [:]
        var samples: [String: Double] = [:]
        for line in text.split(separator: "\n") {
            if line.hasPrefix("# TYPE ") {
                let words = line.split(separator: " ")
                XCTAssertEqual(words.count, 4, String(line))
                XCTAssertNil(types[String(words[2])], "family \(words[2]) typed twice")
                types[String(words[2])] = String(words[3])
            } else if line.hasPrefix("# HELP ") {
                continue
            } else {
                let parts = line.split(separator: " ")
                XCTAssertEqual(parts.count, 2, "sample line \(line)")
                let series = String(parts[0])
                let name = String(series.prefix { $0 != "{" })
                XCTAssertTrue(name.allSatisfy { $0.isLetter || $0.isNumber || $0 == "_" } && name.hasPrefix("nfqr_"), name)
                if series.contains("{") { XCTAssertTrue(series.hasSuffix("\"}"), series) }
                samples[series] = try XCTUnwrap(Double(parts[1]), String(line))
            }
        }
        return (types, samples)
    }

    func testCountersGaugesAndHistogramsAreWellFormed() throws {
        let exporter = PrometheusExporter()
        let (types, samples) = try parse(String(decoding: exporter.render(sample(100, flows: 7)), as: UTF8.self))
        XCTAssertEqual(types["nfqr_packets_total"], "counter")
        XCTAssertEqual(types["nfqr_verdicts_total"], "counter")
        XCTAssertEqual(types["nfqr_flows"], "gauge")
        XCTAssertEqual(types["nfqr_lookup_seconds"], "histogram")
        XCTAssertEqual(samples["nfqr_packets_total"], 100)
        XCTAssertEqual(samples["nfqr_verdicts_total{verdict=\"accept\"}"], 50)
        XCTAssertEqual(samples["nfqr_verdicts_total{verdict=\"drop\"}"], 25)
        XCTAssertEqual(samples["nfqr_flows"], 7)

        // Buckets are cumulative, in increasing `le`, ending with +Inf == _count.
        XCTAssertEqual(samples["nfqr_lookup_seconds_bucket{le=\"0.000001\"}"], 1)
        XCTAssertEqual(samples["nfqr_lookup_seconds_bucket{le=\"0.0000025\"}"], 1)
        XCTAssertEqual(samples["nfqr_lookup_seconds_bucket{le=\"0.005\"}"], 2)
        XCTAssertEqual(samples["nfqr_lookup_seconds_bucket{le=\"0.01\"}"], 3)
        XCTAssertEqual(samples["nfqr_lookup_seconds_bucket{le=\"1\"}"], 3)
        XCTAssertEqual(samples["nfqr_lookup_seconds_bucket{le=\"+Inf\"}"], 4)
        XCTAssertEqual(samples["nfqr_lookup_seconds_count"], 4)
        XCTAssertEqual(try XCTUnwrap(samples["nfqr_lookup_seconds_sum"]), 3.0070038, accuracy: 1e-9)
        let buckets = samples.filter { $0.key.hasPrefix("nfqr_lookup_seconds_bucket") }
        XCTAssertEqual(buckets.count, LatencyHistogram.boundsNanoseconds.count + 1)
    }

    func testCountersKeepTheirTotalsAcrossScrapes() throws {
        let exporter = PrometheusExporter()
        _ = exporter.render(sample(100, flows: 7))
        let (_, samples) = try parse(String(decoding: exporter.render(sample(160, flows: 2)), as: UTF8.self))
        XCTAssertEqual(samples["nfqr_packets_total"], 160)
        XCTAssertEqual(samples["nfqr_verdicts_total{verdict=\"accept\"}"], 80)
        XCTAssertEqual(samples["nfqr_flows"], 2)
    }

    func testSecondsAreWrittenExactly() {
        XCTAssertEqual(PrometheusExporter.seconds(0), "0")
        XCTAssertEqual(PrometheusExporter.seconds(2_500), "0.0000025")
        XCTAssertEqual(PrometheusExporter.seconds(1_000_000_000), "1")
        XCTAssertEqual(PrometheusExporter.seconds(1_250_000_000), "1.25")
    }

    func testTextAndJSONStatisticsCarryHistogramSummaries() {
        let report = sample(10, flows: 1)
        XCTAssertTrue(report.textLines.contains("nfqr_lookup_seconds_count 4"))
        let document = try? JSONSerialization.jsonObject(with: Data(report.jsonLine.utf8)) as? [String: Any]
        let metrics = document?["metrics"] as? [[String: Any]] ?? []
        let histogram = metrics.first { $0["name"] as? String == "nfqr_lookup_seconds" }
        XCTAssertEqual(histogram?["type"] as? String, "histogram")
        XCTAssertEqual(histogram?["count"] as? Int, 4)
    }
}

/// The metric table every report is checked against.
final class MetricCatalogTests: XCTestCase {
    func testEveryMetricIsNamedOnceWithHelpAndAPrometheusName() {
        XCTAssertEqual(Set(MetricCatalog.all.map(\.name)).count, MetricCatalog.all.count, "a metric listed twice")
        for metric in MetricCatalog.all {
            XCTAssertTrue(metric.name.hasPrefix("nfqr_"), metric.name)
            XCTAssertFalse(metric.help.isEmpty, metric.name)
            XCTAssertEqual(metric.kind == .counter, metric.name.hasSuffix("_total"), "\(metric.name): counters, and only they, end in _total")
            if metric.kind == .histogram { XCTAssertTrue(metric.name.hasSuffix("_seconds"), metric.name) }
        }
    }

    /// docs/operations.md's metrics table names every metric of the catalog (with its labels),
    /// so the operators' reference cannot fall behind the exporter.
    func testTheOperationsPageNamesEveryMetric() throws {
        let page = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../docs/operations.md")
        let text = try String(contentsOf: page, encoding: .utf8)
        for metric in MetricCatalog.all {
            let written = metric.labels.isEmpty ? "`\(metric.name)`" : "`\(metric.name){\(metric.labels.joined(separator: ","))}`"
            XCTAssertTrue(text.contains(written), "docs/operations.md does not name \(written)")
        }
    }

    func testAReportTakesItsTypeAndHelpFromTheTable() {
        var report = DaemonStatistics()
        report.counter("nfqr_drops_total", 3, labels: [("reason", "table_full")])
        report.gauge("nfqr_flows", 2)
        XCTAssertEqual(report.entries.map(\.help), [MetricCatalog.byName["nfqr_drops_total"]!.help, MetricCatalog.byName["nfqr_flows"]!.help])
        XCTAssertEqual(report.entries.map(\.isCounter), [true, false])
    }
}
