import Kernel
import RedirectCore

// The daemon's counters gathered into one report, for `STATS`, `nfq-redirect stats` and the
// Prometheus exporter. What each metric is (type, help, labels) is written once, in
// Metrics/MetricCatalog.swift; here only where its value comes from.
extension DaemonRuntime {
    func statistics() -> DaemonStatistics {
        var report = DaemonStatistics()
        let engines = workers.map(\.engine.counters)
        func sum(_ value: (EngineCounters) -> AtomicCounter) -> UInt64 { engines.reduce(0) { $0 + value($1).load } }
        report.gauge("nfqr_build_info", 1, labels: [("version", DaemonVersion.current)])
        report.gauge("nfqr_datapath_mode", 1, labels: [("mode", configuration.datapath.mode.rawValue)])
        if let sync = conntrackSync { sync.addStatistics(to: &report) }
        if let usage = try? ConntrackTableUsage.read() {
            report.gauge("nfqr_kernel_conntrack_entries", UInt64(max(0, usage.count)))
            report.gauge("nfqr_kernel_conntrack_limit", UInt64(max(0, usage.limit)))
        }
        report.counter("nfqr_packets_total", sum(\.packets))
        report.counter("nfqr_bytes_total", sum(\.bytes))
        report.counter("nfqr_verdicts_total", sum(\.accepted), labels: [("verdict", "accept")])
        report.counter(
            "nfqr_verdicts_total", sum(\.rewrittenOriginal) + sum(\.rewrittenReply) + sum(\.relatedTranslated), labels: [("verdict", "rewrite")])
        report.counter("nfqr_verdicts_total", sum(\.markedOriginal), labels: [("verdict", "mark")])
        report.counter("nfqr_verdicts_total", sum(\.dropped), labels: [("verdict", "drop")])
        let byteCounters: [(String, KeyPath<DatapathWorker, AtomicCounter>)] =
            [("accept", \.acceptedBytes), ("rewrite", \.rewrittenBytes), ("mark", \.markedBytes), ("drop", \.droppedBytes)]
        for (verdict, counter) in byteCounters {
            report.counter("nfqr_verdict_bytes_total", workers.reduce(0) { $0 + $1[keyPath: counter].load }, labels: [("verdict", verdict)])
        }
        report.histogram("nfqr_datapath_batch_seconds", workers.reduce(LatencyHistogram.Snapshot.empty) { $0 + $1.batchLatency.snapshot })
        report.histogram("nfqr_lookup_seconds", lookupLatency.snapshot)
        report.counter("nfqr_rewrites_total", sum(\.rewrittenOriginal), labels: [("direction", "original")])
        report.counter("nfqr_rewrites_total", sum(\.rewrittenReply), labels: [("direction", "reply")])
        let related: [(String, KeyPath<EngineCounters, AtomicCounter>)] =
            [("translated", \.relatedTranslated), ("not_redirected", \.relatedNotRedirected), ("unmatched", \.relatedUnmatched)]
        for (result, counter) in related {
            report.counter("nfqr_icmp_errors_total", sum { $0[keyPath: counter] }, labels: [("result", result)])
        }
        report.counter("nfqr_untracked_packets_total", sum(\.untracked))
        report.counter("nfqr_drops_total", sum(\.refusedTableFull), labels: [("reason", "table_full")])
        report.counter("nfqr_drops_total", sum(\.refusedTupleInUse), labels: [("reason", "tuple_in_use")])
        report.counter("nfqr_drops_total", sum(\.noRedirectAddress), labels: [("reason", "no_redirect_address")])
        for (index, error) in PacketError.allCases.enumerated() {
            let count = engines.reduce(0) { $0 + $1.packetErrors[index].load }
            report.counter("nfqr_packet_errors_total", count, labels: [("reason", error.label), ("action", error.isPassUntouched ? "pass" : "drop")])
        }
        report.counter("nfqr_truncated_captures_total", workers.reduce(0) { $0 + $1.truncatedCaptures.load })
        report.counter("nfqr_queue_receive_errors_total", workers.reduce(0) { $0 + $1.receiveErrors.load })
        report.counter("nfqr_queue_send_errors_total", workers.reduce(0) { $0 + $1.sendErrors.load })
        var queueTotals = PacketQueueCounters()
        for worker in workers {
            let counters = worker.queue.counters
            queueTotals.noBufferSpace += counters.noBufferSpace
            queueTotals.netlinkErrors += counters.netlinkErrors
            queueTotals.parseErrors += counters.parseErrors
            queueTotals.batches += counters.batches
        }
        report.counter("nfqr_queue_enobufs_total", queueTotals.noBufferSpace)
        report.counter("nfqr_queue_netlink_errors_total", queueTotals.netlinkErrors)
        report.counter("nfqr_queue_message_errors_total", queueTotals.parseErrors)
        report.counter("nfqr_queue_batches_total", queueTotals.batches)
        if let kernel = try? NetfilterQueueKernelStatistics.read() {
            let ours = Set(configuration.queues.originalQueues).union(configuration.queues.replyQueues)
            for queue in kernel where ours.contains(queue.queueNumber) {
                let labels = [("queue", String(queue.queueNumber))]
                report.gauge("nfqr_kernel_queue_length", UInt64(queue.queueTotal), labels: labels)
                report.counter("nfqr_kernel_queue_dropped_total", UInt64(queue.queueDropped), labels: labels)
                report.counter("nfqr_kernel_user_dropped_total", UInt64(queue.userDropped), labels: labels)
            }
        }
        let flows = table.statistics
        report.gauge("nfqr_flows", UInt64(table.count))
        report.gauge("nfqr_flows_limit", UInt64(configuration.tableLimit))
        for (state, count) in flows.byState.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
            report.gauge("nfqr_flows_by_state", UInt64(count), labels: [("state", state.description)])
        }
        report.counter("nfqr_flows_created_total", flows.created)
        report.counter("nfqr_flows_restored_total", flows.restored)
        for reason in FlowEndReason.allCases {
            report.counter("nfqr_flows_destroyed_total", flows.destroyed(reason), labels: [("reason", reason.description)])
        }
        report.counter("nfqr_flows_invalid_packets_total", flows.invalid)
        report.counter("nfqr_flows_blind_resets_total", flows.blindResets)
        report.counter("nfqr_flows_ignored_total", flows.ignoredByPolicy)
        report.counter("nfqr_flow_events_lost_total", flows.eventsLost)
        report.counter("nfqr_flows_refused_total", flows.refusedTableFull, labels: [("reason", "table_full")])
        report.counter("nfqr_flows_refused_total", flows.refusedTupleInUse, labels: [("reason", "tuple_in_use")])
        for state in GetsockoptHookStatus.labels {
            report.gauge("nfqr_getsockopt_hook", getsockoptHook.label == state ? 1 : 0, labels: [("state", state)])
        }
        report.counter("nfqr_getsockopt_answers_total", nativeAnswers.written.load, labels: [("change", "written")])
        report.counter("nfqr_getsockopt_answers_total", nativeAnswers.removed.load, labels: [("change", "removed")])
        report.counter("nfqr_getsockopt_answer_errors_total", nativeAnswers.failed.load)
        report.counter("nfqr_interface_address_changes_total", addressChanges.load)
        report.counter("nfqr_rules_restored_total", rulesRestored.load)
        report.counter("nfqr_reloads_total", reloadsApplied.load, labels: [("result", "applied")])
        report.counter("nfqr_reloads_total", reloadsRefused.load, labels: [("result", "refused")])
        report.gauge("nfqr_rules_missing", UInt64(max(0, rulesMissing.load)))
        if let lookup = lookupServer?.counters {
            report.counter("nfqr_lookup_requests_total", lookup.requests.load)
            for (label, count) in lookup.answers {
                report.counter("nfqr_lookups_total", count, labels: [("answer", label)])
            }
            report.counter("nfqr_lookup_denied_total", lookup.deniedPeers.load)
            report.counter("nfqr_lookup_rejected_total", lookup.rejectedTooMany.load, labels: [("reason", "too_many_clients")])
            report.counter("nfqr_lookup_rejected_total", lookup.droppedSlowClients.load, labels: [("reason", "slow_reader")])
            report.counter("nfqr_lookup_rejected_total", lookup.idleDisconnects.load, labels: [("reason", "idle")])
            report.gauge("nfqr_lookup_clients", UInt64(max(0, lookup.clients.load)))
        }
        return report
    }
}
