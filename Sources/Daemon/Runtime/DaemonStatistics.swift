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

    /// One JSON object: `{"name": value, "name{label=value}": value, ...}`.
    var jsonLine: String {
        "{" + (entries.map { entry in
            let labels = entry.labels.isEmpty ? "" : "{" + entry.labels.map { "\($0.0)=\($0.1)" }.joined(separator: ",") + "}"
            return "\"\(entry.name)\(labels)\":\(entry.value)"
        } + histogramSummaries.map { "\"\($0.name)\":\($0.value)" }).joined(separator: ",") + "}"
    }
}
