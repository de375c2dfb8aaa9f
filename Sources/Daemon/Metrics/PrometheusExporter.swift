import Prometheus
import Synchronization

/// Renders the daemon's statistics in the Prometheus text format through swift-prometheus.
/// The daemon counts in its own contention-free counters; at each scrape the exporter moves
/// the increase since the last scrape into the registry's counters and sets its gauges.
final class PrometheusExporter: Sendable {
    private let registry = PrometheusCollectorRegistry()
    private struct State {
        var counters: [String: (metric: Prometheus.Counter, last: UInt64)] = [:]
        var gauges: [String: Prometheus.Gauge] = [:]
    }
    private let state = Mutex(State())

    func render(_ statistics: DaemonStatistics) -> [UInt8] {
        state.withLock { state in
            for entry in statistics.entries {
                let key = entry.name + entry.labels.map { "|\($0.0)=\($0.1)" }.joined()
                if entry.isCounter {
                    let existing = state.counters[key] ?? (registry.makeCounter(name: entry.name, labels: entry.labels, help: entry.help), 0)
                    if entry.value > existing.last {
                        existing.metric.increment(by: Int64(entry.value - existing.last))
                    }
                    state.counters[key] = (existing.metric, max(existing.last, entry.value))
                } else {
                    let gauge = state.gauges[key] ?? registry.makeGauge(name: entry.name, labels: entry.labels, help: entry.help)
                    gauge.set(Double(entry.value))
                    state.gauges[key] = gauge
                }
            }
        }
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        return buffer
    }
}
