import RedirectCore

extension FlowTimeouts {
    /// The `[timeouts]` keys of the config file and the field each sets (seconds).
    static let configurationKeys: [(name: String, path: WritableKeyPath<FlowTimeouts, UInt32>)] = [
        ("tcp_syn_sent", \.synSent), ("tcp_syn_received", \.synReceived), ("tcp_established", \.established),
        ("tcp_fin_wait", \.finWait), ("tcp_close_wait", \.closeWait), ("tcp_last_ack", \.lastAck),
        ("tcp_time_wait", \.timeWait), ("tcp_close", \.close), ("udp_unreplied", \.udpUnreplied), ("udp_replied", \.udpReplied),
    ]
}
