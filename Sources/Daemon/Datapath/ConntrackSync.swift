import Kernel
import Logging
import RedirectCore

/// Kernel-nat mode: keeps the flow table the truth users see while the kernel's NAT carries
/// the flows.
///
/// The datapath enters a flow when it decides its first packet; from then on no packet of the
/// flow reaches the daemon, so its life is learnt from conntrack: one thread reads the
/// ctnetlink events of the daemon's entries (their conntrack mark has bits in the mode's mask;
/// the kernel-side socket filter drops every other entry's events, so a SYN flood of other
/// traffic never wakes it) and turns each into a `KernelFlowReport` for the table: NEW and
/// UPDATE carry the state, whether the proxy answered, and the time the kernel keeps the entry;
/// DESTROY removes the flow.
///
/// Events can be lost (the socket's buffer overruns in a storm) and the kernel refreshes a UDP
/// entry's timer on every packet without an event, so the thread also reads all of the
/// daemon's entries (one dump per redirect port's mark): at start, after an overrun, and every
/// `resyncSeconds`. Each flow's timer is the kernel's remaining timeout plus two resync
/// intervals, so a flow the kernel keeps never expires here between two reads, and a dump
/// removes the redirected flows the kernel no longer has (created before the dump began: a
/// newer flow's first packet may not have been confirmed yet).
///
/// Memory stays bounded in a storm: events are applied as they come (the table enforces its
/// limit: a flow it cannot enter is ignored, as the datapath would have refused it), the
/// receive buffer is fixed, and a dump holds at most the kernel's own table (nf_conntrack_max).
final class ConntrackSync: @unchecked Sendable {
    enum ResyncReason: String, CaseIterable {
        case start
        case periodic
        case overrun
    }

    private let source: any ConntrackEventSource
    private let table: FlowTable
    private let rules: SnapshotBox<DatapathRules>
    private let resyncSeconds: UInt32
    private let clock: @Sendable () -> UInt32
    private let logger: Logger
    private let problems: RateLimitedLog
    private let stopRequested = AtomicCounter()
    /// Bumped after every receive (including time-outs): proof of life for the watchdog.
    let progress = AtomicCounter()
    let newEvents = AtomicCounter()
    let updateEvents = AtomicCounter()
    let destroyEvents = AtomicCounter()
    let adopted = AtomicCounter()
    let rekeyed = AtomicCounter()
    let removed = AtomicCounter()
    let removedUnheard = AtomicCounter()
    /// Lookups that asked the kernel about one entry.
    let verified = AtomicCounter()
    private let resyncs: [AtomicCounter] = ResyncReason.allCases.map { _ in AtomicCounter() }

    init(
        source: any ConntrackEventSource, table: FlowTable, rules: SnapshotBox<DatapathRules>, resyncSeconds: Int,
        clock: @escaping @Sendable () -> UInt32, logger: Logger
    ) {
        self.source = source
        self.table = table
        self.rules = rules
        self.resyncSeconds = UInt32(max(1, resyncSeconds))
        self.clock = clock
        self.logger = logger
        problems = RateLimitedLog(logger: logger, interval: 10)
    }

    /// The longest a flow the kernel keeps can go without a report: two resync intervals.
    var grace: UInt32 { 2 * resyncSeconds }

    /// Runs until `stop()`.
    func run() {
        var events: [ConntrackEvent] = []
        events.reserveCapacity(256)
        resync(.start)
        var lastResync = clock()
        while stopRequested.load == 0 {
            let result: ConntrackReceiveResult
            do {
                result = try source.receive(into: &events, timeoutMilliseconds: 250)
            } catch {
                problems.warning("conntrack events: receive failed: \(error)")
                progress.add(1)
                continue
            }
            progress.add(1)
            let now = clock()
            for event in events { apply(event, now: now) }
            if result == .overrun {
                problems.warning("conntrack events were lost (socket buffer full): reading the daemon's entries again")
                resync(.overrun)
                lastResync = clock()
            } else if now &- lastResync >= resyncSeconds {
                resync(.periodic)
                lastResync = clock()
            }
        }
    }

    func stop() {
        stopRequested.add(1)
        source.interrupt()
    }

    /// One event as the table takes it.
    func apply(_ event: ConntrackEvent, now: UInt32) {
        switch event.kind {
        case .new: newEvents.add(1)
        case .update: updateEvents.add(1)
        case .destroy: destroyEvents.add(1)
        }
        guard let report = Self.report(event) else { return }
        count(table.applyKernelReport(report, grace: grace, now: now))
    }

    /// Asks the kernel about one flow (a lookup found the kernel's last timeout for it passed):
    /// the entry refreshes the flow, its absence ends it. Called from the lookup thread.
    func verify(proto: TransportProtocol, client: Endpoint, local: Endpoint) {
        verified.add(1)
        let now = clock()
        let reply = FlowTuple(proto: proto, source: local, destination: client)
        do {
            if let entry = try source.entry(reply: reply), var report = Self.report(entry) {
                report.current = true
                count(table.applyKernelReport(report, grace: grace, now: now))
            } else if case .redirected(let destination) = table.lookup(proto: proto, client: client, local: local, now: now) {
                let gone = KernelFlowReport(
                    original: FlowTuple(proto: proto, source: client, destination: destination), replySource: local, state: nil,
                    seenReply: false, assured: false, timeout: 0, destroyed: true)
                count(table.applyKernelReport(gone, grace: grace, now: now))
            }
        } catch {
            problems.warning("conntrack: asking about \(reply) failed: \(error)")
        }
    }

    private func count(_ outcome: KernelReportOutcome) {
        switch outcome {
        case .adopted: adopted.add(1)
        case .rekeyed: rekeyed.add(1)
        case .removed: removed.add(1)
        case .updated, .ignored: break
        }
    }

    /// The most ports any configuration of this run has had: flows keep the mark values they
    /// were given, so a reload that removes ports must not stop the dumps of those values.
    private var highestPortCount = 0

    /// Reads every entry of the daemon's (one dump per mark value in use), applies each, and
    /// removes the redirected flows the kernel no longer has.
    func resync(_ reason: ResyncReason) {
        resyncs[ResyncReason.allCases.firstIndex(of: reason)!].add(1)
        guard let marks = rules.value.kernelNAT else { return }
        highestPortCount = max(highestPortCount, marks.ports.count)
        let started = clock()
        var present = Set<FlowTuple>()
        for number in stride(from: 1, through: highestPortCount, by: 1) {
            let value = marks.value(number: number)
            let entries: [ConntrackEvent]
            do {
                entries = try source.dump(markValue: value, markMask: marks.mask)
            } catch {
                problems.warning("conntrack: reading the entries of mark 0x\(String(value, radix: 16)) failed: \(error)")
                return  // nothing is removed after a partial read
            }
            let now = clock()
            for entry in entries {
                guard var report = Self.report(entry) else { continue }
                report.current = true
                present.insert(report.original)
                count(table.applyKernelReport(report, grace: grace, now: now))
            }
        }
        // A flow younger than a few seconds may have a first packet still on its way to being
        // confirmed (or a successor's queue still holding it): it is not judged by this read.
        let gone = table.removeRedirected(notIn: present, createdBefore: started &- Self.confirmationAllowance, now: clock())
        removedUnheard.add(UInt64(gone))
        if gone > 0 { logger.debug("conntrack resync (\(reason.rawValue)): \(gone) flows had ended unheard") }
    }

    /// Seconds a flow's first packet is given to become a confirmed kernel entry before a
    /// resync that does not find it removes the flow.
    static let confirmationAllowance: UInt32 = 5

    /// The table's view of an event: the TCP state when it carries one (an update about
    /// something else carries none), whether the proxy answered, the kernel's timeout.
    static func report(_ event: ConntrackEvent) -> KernelFlowReport? {
        let state: FlowState?
        switch event.proto {
        case .tcp:
            guard let tcpState = event.tcpState else {
                state = nil
                break
            }
            // NONE and SYN_SENT2 (simultaneous open) are not states the table keeps.
            guard let known = KernelFlowReport.state(proto: .tcp, kernelTCPState: tcpState.rawValue, seenReply: event.hasSeenReply) else {
                return nil
            }
            state = known
        case .udp:
            state = KernelFlowReport.state(proto: .udp, kernelTCPState: 0, seenReply: event.hasSeenReply)
        }
        // Keyed as the proxy sees the client: the kernel's NAT may have given it another port.
        let seen = event.reply.destination
        return KernelFlowReport(
            original: FlowTuple(proto: event.proto, source: seen, destination: event.original.destination), replySource: event.reply.source,
            state: state, seenReply: event.hasSeenReply, assured: event.isAssured, timeout: event.timeout ?? 0,
            destroyed: event.kind == .destroy, firstPacketClient: seen == event.original.source ? nil : event.original.source)
    }

    func addStatistics(to report: inout DaemonStatistics) {
        report.counter("nfqr_conntrack_events_total", newEvents.load, labels: [("kind", "new")])
        report.counter("nfqr_conntrack_events_total", updateEvents.load, labels: [("kind", "update")])
        report.counter("nfqr_conntrack_events_total", destroyEvents.load, labels: [("kind", "destroy")])
        for (index, reason) in ResyncReason.allCases.enumerated() {
            report.counter("nfqr_conntrack_resyncs_total", resyncs[index].load, labels: [("reason", reason.rawValue)])
        }
        report.counter("nfqr_conntrack_flows_total", adopted.load, labels: [("result", "adopted")])
        report.counter("nfqr_conntrack_flows_total", rekeyed.load, labels: [("result", "rekeyed")])
        report.counter("nfqr_conntrack_flows_total", removed.load, labels: [("result", "removed")])
        report.counter("nfqr_conntrack_flows_total", removedUnheard.load, labels: [("result", "removed_unheard")])
        report.counter("nfqr_conntrack_lookups_verified_total", verified.load)
    }
}
