import NFQRedirectClient
import RedirectCore

/// The lookup service's view of the running daemon.
final class DaemonBackend: LookupBackend, @unchecked Sendable {
    private let table: FlowTable
    private let clock: @Sendable () -> UInt32
    private let statistics: @Sendable () -> DaemonStatistics
    private let latency: LatencyHistogram
    /// Kernel-nat mode: asks the kernel about a flow whose kernel timeout has passed.
    private let conntrack: ConntrackSync?

    init(
        table: FlowTable, clock: @escaping @Sendable () -> UInt32, latency: LatencyHistogram, conntrack: ConntrackSync? = nil,
        statistics: @escaping @Sendable () -> DaemonStatistics
    ) {
        self.table = table
        self.conntrack = conntrack
        self.clock = clock
        self.latency = latency
        self.statistics = statistics
    }

    func lookup(proto: TransportProtocol, client: Endpoint, local: Endpoint) -> LookupAnswer {
        let started = ContinuousClock.now
        if let conntrack, table.kernelExpiryPassed(proto: proto, client: client, local: local, now: clock()) {
            // The kernel may have refreshed the entry without an event (UDP), or dropped it and
            // not reaped it yet: its own answer decides (one netlink request).
            conntrack.verify(proto: proto, client: client, local: local)
        }
        let answer = LookupAnswer(table.lookup(proto: proto, client: client, local: local, now: clock()))
        latency.record(ContinuousClock.now - started)
        return answer
    }

    func flowLines(_ format: LookupRequest.OutputFormat) -> [String] {
        let now = clock()
        return table.records(now: now)
            .sorted { ($0.created, $0.client.port) < ($1.created, $1.client.port) }
            .map { FlowFormatting.line(for: $0, now: now, format: format) }
    }

    func statisticsLines(_ format: LookupRequest.OutputFormat) -> [String] {
        let report = statistics()
        return format == .json ? [report.jsonLine] : report.textLines
    }

    var versionLine: String { "nfq-redirect \(DaemonVersion.current) protocol 1" }

    func drainEvents() -> [FlowEvent] { table.drainEvents() }
}
