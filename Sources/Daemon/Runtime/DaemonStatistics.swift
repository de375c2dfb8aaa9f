import Kernel
import RedirectCore

/// Every counter the daemon keeps, gathered once for `STATS`, `nfq-redirect stats` and the
/// Prometheus exporter, so all three always agree.
struct DaemonStatistics {
    struct Entry {
        var name: String
        var labels: [(String, String)] = []
        var value: UInt64
        var isCounter: Bool
        var help: String
    }

    struct Histogram {
        var name: String
        var help: String
        var snapshot: LatencyHistogram.Snapshot
    }

    var entries: [Entry] = []
    var histograms: [Histogram] = []

    /// A counter of `MetricCatalog` (its help comes from there).
    mutating func counter(_ name: String, _ value: UInt64, labels: [(String, String)] = []) {
        let metric = MetricCatalog.metric(name, .counter, labels: labels)
        entries.append(Entry(name: name, labels: labels, value: value, isCounter: true, help: metric.help))
    }

    /// A gauge of `MetricCatalog`.
    mutating func gauge(_ name: String, _ value: UInt64, labels: [(String, String)] = []) {
        let metric = MetricCatalog.metric(name, .gauge, labels: labels)
        entries.append(Entry(name: name, labels: labels, value: value, isCounter: false, help: metric.help))
    }

    /// A latency histogram of `MetricCatalog`, in seconds as Prometheus names them (`..._seconds`).
    mutating func histogram(_ name: String, _ snapshot: LatencyHistogram.Snapshot) {
        let metric = MetricCatalog.metric(name, .histogram, labels: [])
        histograms.append(Histogram(name: name, help: metric.help, snapshot: snapshot))
    }

    /// Histograms reduced to their count and sum (in nanoseconds), for `STATS`.
    private var histogramSummaries: [(name: String, value: UInt64)] {
        histograms.flatMap { [("\($0.name)_count", $0.snapshot.count), ("\($0.name)_sum_nanoseconds", $0.snapshot.sumNanoseconds)] }
    }

    /// `name{label="value"} 42` lines.
    var textLines: [String] {
        entries.map { entry in
            let labels = entry.labels.isEmpty ? "" : "{" + entry.labels.map { "\($0.0)=\"\($0.1)\"" }.joined(separator: ",") + "}"
            return "\(entry.name)\(labels) \(entry.value)"
        } + histogramSummaries.map { "\($0.name) \($0.value)" }
    }

    /// One JSON object, labels as fields (never inside a key):
    ///
    ///     {"timestamp":"2026-12-06T15:28:08.123456Z","metrics":[
    ///      {"name":"nfqr_flows","type":"gauge","labels":{},"value":7},
    ///      {"name":"nfqr_drops_total","type":"counter","labels":{"reason":"table_full"},"value":0},
    ///      {"name":"nfqr_lookup_seconds","type":"histogram","labels":{},"count":4,"sum":3.0070038,
    ///       "buckets":[{"le":0.000001,"count":1},...]}]}
    ///
    /// One entry per series, in the order of the text form; histogram buckets are cumulative,
    /// `le` in seconds, the last bucket (`+Inf`) being `count`.
    var jsonLine: String { json(timestamp: WallClock.Reading.now().realtimeNanoseconds) }

    func json(timestamp: Int64) -> String {
        func labelObject(_ labels: [(String, String)]) -> String {
            "{" + labels.map { "\(jsonString($0.0)):\(jsonString($0.1))" }.joined(separator: ",") + "}"
        }
        let series =
            entries.map { entry in
                "{\"name\":\(jsonString(entry.name)),\"type\":\"\(entry.isCounter ? "counter" : "gauge")\","
                    + "\"labels\":\(labelObject(entry.labels)),\"value\":\(entry.value)}"
            }
            + histograms.map { histogram in
                var cumulative: UInt64 = 0
                let bounds = LatencyHistogram.boundsNanoseconds
                let buckets = zip(bounds, histogram.snapshot.counts).map { bound, count in
                    cumulative += count
                    return "{\"le\":\(PrometheusExporter.seconds(bound)),\"count\":\(cumulative)}"
                }
                return "{\"name\":\(jsonString(histogram.name)),\"type\":\"histogram\",\"labels\":{},"
                    + "\"count\":\(histogram.snapshot.count),\"sum\":\(PrometheusExporter.seconds(histogram.snapshot.sumNanoseconds)),"
                    + "\"buckets\":[\(buckets.joined(separator: ","))]}"
            }
        return "{\"timestamp\":\"\(WallClock.rfc3339(nanosecondsSinceEpoch: timestamp))\",\"metrics\":["
            + series.joined(separator: ",") + "]}"
    }
}

/// A JSON string literal: quotes, backslashes and control characters escaped.
func jsonString(_ text: String) -> String {
    var out = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case _ where scalar.value < 0x20:
            let hex = String(scalar.value, radix: 16)
            out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out + "\""
}
