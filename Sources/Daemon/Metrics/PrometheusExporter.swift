import Prometheus
import RedirectCore

/// Renders the daemon's statistics in the Prometheus text format through swift-prometheus.
/// The daemon counts in its own contention-free counters; at each scrape the exporter moves
/// the increase since the last scrape into the registry's counters and sets its gauges.
/// Latency histograms are bucketed on the hot path already (`LatencyHistogram`); the registry
/// can only bucket observations itself, so they are written after its output, in its format.
final class PrometheusExporter: Sendable {
    private let registry = PrometheusCollectorRegistry()
    private struct State {
        var counters: [String: (metric: Prometheus.Counter, last: UInt64)] = [:]
        var gauges: [String: Prometheus.Gauge] = [:]
    }
    private let state = Locked(State())

    func render(_ statistics: DaemonStatistics) -> [UInt8] {
        state.withLock { state in
            for entry in statistics.entries {
                let key = entry.name + entry.labels.map { "|\($0.0)=\($0.1)" }.joined()
                // Our names are whole already (`nfqr_..._total`); an empty unit adds nothing.
                // Only a metric seen for the first time needs one (`??` evaluates it lazily).
                func descriptor() -> MetricNameDescriptor {
                    MetricNameDescriptor(metricName: entry.name, unitName: "", helpText: entry.help)
                }
                if entry.isCounter {
                    let existing = state.counters[key] ?? (registry.makeCounter(descriptor: descriptor(), labels: entry.labels), 0)
                    if entry.value > existing.last {
                        existing.metric.increment(by: Int64(entry.value - existing.last))
                    }
                    state.counters[key] = (existing.metric, max(existing.last, entry.value))
                } else {
                    let gauge = state.gauges[key] ?? registry.makeGauge(descriptor: descriptor(), labels: entry.labels)
                    gauge.set(Double(entry.value))
                    state.gauges[key] = gauge
                }
            }
        }
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        for histogram in statistics.histograms {
            buffer.append(contentsOf: Self.text(histogram).utf8)
        }
        return buffer
    }

    /// The text format of one histogram: cumulative buckets ending in `+Inf`, sum, count.
    static func text(_ histogram: DaemonStatistics.Histogram) -> String {
        let name = histogram.name
        var text = "# HELP \(name) \(histogram.help)\n# TYPE \(name) histogram\n"
        var cumulative: UInt64 = 0
        let bounds = LatencyHistogram.boundsNanoseconds
        for (index, count) in histogram.snapshot.counts.enumerated() {
            cumulative += count
            let bound = index < bounds.count ? seconds(bounds[index]) : "+Inf"
            text += "\(name)_bucket{le=\"\(bound)\"} \(cumulative)\n"
        }
        text += "\(name)_sum \(seconds(histogram.snapshot.sumNanoseconds))\n"
        text += "\(name)_count \(histogram.snapshot.count)\n"
        return text
    }

    /// Nanoseconds as decimal seconds without float rounding noise: 2500 -> "0.0000025".
    static func seconds(_ nanoseconds: UInt64) -> String {
        let whole = nanoseconds / 1_000_000_000
        var fraction = String(nanoseconds % 1_000_000_000)
        fraction = String(repeating: "0", count: 9 - fraction.count) + fraction
        while fraction.hasSuffix("0") { fraction.removeLast() }
        return fraction.isEmpty ? "\(whole)" : "\(whole).\(fraction)"
    }
}
