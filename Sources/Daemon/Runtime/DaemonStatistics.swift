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

    var entries: [Entry] = []

    mutating func counter(_ name: String, _ value: UInt64, labels: [(String, String)] = [], help: String) {
        entries.append(Entry(name: name, labels: labels, value: value, isCounter: true, help: help))
    }

    mutating func gauge(_ name: String, _ value: UInt64, labels: [(String, String)] = [], help: String) {
        entries.append(Entry(name: name, labels: labels, value: value, isCounter: false, help: help))
    }

    /// `name{label="value"} 42` lines.
    var textLines: [String] {
        entries.map { entry in
            let labels = entry.labels.isEmpty ? "" : "{" + entry.labels.map { "\($0.0)=\"\($0.1)\"" }.joined(separator: ",") + "}"
            return "\(entry.name)\(labels) \(entry.value)"
        }
    }

    /// One JSON object: `{"name": value, "name{label=value}": value, ...}`.
    var jsonLine: String {
        "{" + entries.map { entry in
            let labels = entry.labels.isEmpty ? "" : "{" + entry.labels.map { "\($0.0)=\($0.1)" }.joined(separator: ",") + "}"
            return "\"\(entry.name)\(labels)\":\(entry.value)"
        }.joined(separator: ",") + "}"
    }
}
