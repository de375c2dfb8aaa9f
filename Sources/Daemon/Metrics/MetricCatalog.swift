/// Every metric the daemon exports, described once: name, type, label names and help.
/// `DaemonStatistics` takes type and help from here (and refuses a metric not listed, or with
/// other labels), so the Prometheus output, `STATS` and this table cannot drift apart.
enum MetricCatalog {
    enum Kind: Sendable {
        case counter
        case gauge
        /// A latency histogram in seconds (`_bucket`, `_sum`, `_count`).
        case histogram
    }

    struct Metric: Sendable {
        var name: String
        var kind: Kind
        var labels: [String]
        var help: String

        init(_ name: String, _ kind: Kind, labels: [String] = [], help: String) {
            self.name = name
            self.kind = kind
            self.labels = labels
            self.help = help
        }
    }

    /// In the order the exporter writes them.
    static let all: [Metric] = [
        Metric(
            "nfqr_build_info", .gauge, labels: ["version"],
            help: "Always 1; the daemon's version as a label."),
        Metric(
            "nfqr_datapath_mode", .gauge, labels: ["mode"],
            help: "Always 1; the datapath mode (userspace or kernel-nat) as a label."),
        Metric(
            "nfqr_conntrack_events_total", .counter, labels: ["kind"],
            help: "Kernel-nat mode: conntrack events about the daemon's flows, by kind (new, update, destroy)."),
        Metric(
            "nfqr_conntrack_resyncs_total", .counter, labels: ["reason"],
            help: "Kernel-nat mode: full reads of the daemon's conntrack entries, by reason (start, periodic, overrun)."),
        Metric(
            "nfqr_conntrack_flows_total", .counter, labels: ["result"],
            help: "Kernel-nat mode: what conntrack reports did to the flow table (adopted, rekeyed, removed, removed_unheard)."),
        Metric(
            "nfqr_conntrack_lookups_verified_total", .counter,
            help: "Kernel-nat mode: lookups of a flow past the kernel's last timeout for it, which asked the kernel about that entry."),
        Metric(
            "nfqr_kernel_conntrack_entries", .gauge,
            help: "Entries in the kernel's conntrack table (all of the namespace's flows, not only the daemon's)."),
        Metric(
            "nfqr_kernel_conntrack_limit", .gauge,
            help: "The kernel's conntrack table limit (net.netfilter.nf_conntrack_max)."),
        Metric(
            "nfqr_packets_total", .counter,
            help: "Packets received from the kernel's queues."),
        Metric(
            "nfqr_bytes_total", .counter,
            help: "Bytes of packets received from the kernel's queues."),
        Metric(
            "nfqr_verdicts_total", .counter, labels: ["verdict"],
            help: "Verdicts by kind."),
        Metric(
            "nfqr_verdict_bytes_total", .counter, labels: ["verdict"],
            help: "Bytes of packets by verdict."),
        Metric(
            "nfqr_datapath_batch_seconds", .histogram,
            help: "Time from receiving a batch of packets to sending its verdicts."),
        Metric(
            "nfqr_lookup_seconds", .histogram,
            help: "Time to answer a LOOKUP from the flow table."),
        Metric(
            "nfqr_rewrites_total", .counter, labels: ["direction"],
            help: "Packets rewritten, by direction."),
        Metric(
            "nfqr_icmp_errors_total", .counter, labels: ["result"],
            help: "ICMP/ICMPv6 errors quoting a TCP or UDP packet, by what they matched: translated for a redirected flow, passed otherwise."),
        Metric(
            "nfqr_untracked_packets_total", .counter,
            help: "Packets of flows the table does not know and would not create (e.g. TCP without SYN)."),
        Metric(
            "nfqr_drops_total", .counter, labels: ["reason"],
            help: "Dropped packets, by reason."),
        Metric(
            "nfqr_packet_errors_total", .counter, labels: ["reason", "action"],
            help: "Packets not parsed, by reason."),
        Metric(
            "nfqr_truncated_captures_total", .counter,
            help: "Packets larger than what the kernel copied; passed unmodified."),
        Metric(
            "nfqr_queue_receive_errors_total", .counter,
            help: "Failed receives from the queue sockets."),
        Metric(
            "nfqr_queue_send_errors_total", .counter,
            help: "Failed verdict sends."),
        Metric(
            "nfqr_queue_enobufs_total", .counter,
            help: "Receive buffer overruns (ENOBUFS): packets the kernel could not hand us."),
        Metric(
            "nfqr_queue_netlink_errors_total", .counter,
            help: "Netlink error messages from the queue sockets."),
        Metric(
            "nfqr_queue_message_errors_total", .counter,
            help: "Queue messages that could not be parsed."),
        Metric(
            "nfqr_queue_batches_total", .counter,
            help: "Receive batches."),
        Metric(
            "nfqr_kernel_queue_length", .gauge, labels: ["queue"],
            help: "Packets waiting in the kernel's queue."),
        Metric(
            "nfqr_kernel_queue_dropped_total", .counter, labels: ["queue"],
            help: "Packets the kernel dropped because the queue was full."),
        Metric(
            "nfqr_kernel_user_dropped_total", .counter, labels: ["queue"],
            help: "Packets the kernel could not send to us (socket buffer full)."),
        Metric(
            "nfqr_flows", .gauge,
            help: "Flows tracked now."),
        Metric(
            "nfqr_flows_limit", .gauge,
            help: "Most flows tracked at once."),
        Metric(
            "nfqr_flows_by_state", .gauge, labels: ["state"],
            help: "Flows tracked now, by state."),
        Metric(
            "nfqr_flows_created_total", .counter,
            help: "Flows created."),
        Metric(
            "nfqr_flows_restored_total", .counter,
            help: "Flows restored from the state file."),
        Metric(
            "nfqr_flows_destroyed_total", .counter, labels: ["reason"],
            help: "Flows destroyed, by reason."),
        Metric(
            "nfqr_flows_invalid_packets_total", .counter,
            help: "Packets of known TCP flows the state machine found invalid (still rewritten)."),
        Metric(
            "nfqr_flows_blind_resets_total", .counter,
            help: "Client resets far from the client's sequence numbers (forged): ignored."),
        Metric(
            "nfqr_flows_ignored_total", .counter,
            help: "First packets the policy did not redirect or track."),
        Metric(
            "nfqr_flow_events_lost_total", .counter,
            help: "Flow events overwritten before the lookup service drained them."),
        Metric(
            "nfqr_flows_refused_total", .counter, labels: ["reason"],
            help: "New flows refused."),
        Metric(
            "nfqr_getsockopt_hook", .gauge, labels: ["state"],
            help: "Whether the kernel answers getsockopt(SO_ORIGINAL_DST) for redirected flows: on, off (configured), unavailable (the host refused)."
        ),
        Metric(
            "nfqr_getsockopt_answers_total", .counter, labels: ["change"],
            help: "Answers written to or removed from the getsockopt hook's map."),
        Metric(
            "nfqr_getsockopt_answer_errors_total", .counter,
            help: "Writes to the getsockopt hook's map that failed (the flow is still answered by the lookup socket)."),
        Metric(
            "nfqr_interface_address_changes_total", .counter,
            help: "Interface address snapshots applied."),
        Metric(
            "nfqr_rules_restored_total", .counter,
            help: "Times the daemon's firewall rules were found missing (a firewall reload) and put back."),
        Metric(
            "nfqr_reloads_total", .counter, labels: ["result"],
            help: "Configuration reloads (SIGHUP), by result."),
        Metric(
            "nfqr_rules_missing", .gauge,
            help: "1 while the daemon's firewall rules are missing and not put back ([rules] manage = false, or the repair failed)."),
        Metric(
            "nfqr_lookup_requests_total", .counter,
            help: "Lookup socket requests."),
        Metric(
            "nfqr_lookups_total", .counter, labels: ["answer"],
            help: "Lookups by answer."),
        Metric(
            "nfqr_lookup_denied_total", .counter,
            help: "Lookup clients not on the allow list."),
        Metric(
            "nfqr_lookup_rejected_total", .counter, labels: ["reason"],
            help: "Lookup clients disconnected or refused."),
        Metric(
            "nfqr_lookup_clients", .gauge,
            help: "Lookup clients connected now."),
    ]

    static let byName: [String: Metric] = Dictionary(uniqueKeysWithValues: all.map { ($0.name, $0) })

    /// The catalog's entry for `name`; a metric reported without one is a programming error.
    static func metric(_ name: String, _ kind: Kind, labels: [(String, String)]) -> Metric {
        guard let metric = byName[name] else { preconditionFailure("metric \(name) is not in MetricCatalog") }
        precondition(metric.kind == kind, "metric \(name) is a \(metric.kind) in MetricCatalog")
        precondition(metric.labels == labels.map(\.0), "metric \(name) has labels \(metric.labels) in MetricCatalog")
        return metric
    }
}
