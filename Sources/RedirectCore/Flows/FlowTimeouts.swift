/// How long, in seconds, a flow may stay idle in each state before it expires.
/// The defaults are the kernel's (`nf_conntrack_tcp_timeout_*`, `nf_conntrack_udp_timeout*`).
public struct FlowTimeouts: Hashable, Sendable {
    public var synSent: UInt32
    public var synReceived: UInt32
    public var established: UInt32
    public var finWait: UInt32
    public var closeWait: UInt32
    public var lastAck: UInt32
    public var timeWait: UInt32
    public var close: UInt32
    /// UDP before the flow has carried traffic after its first answer.
    public var udpUnreplied: UInt32
    /// UDP once it is a stream: a packet came after the first answer.
    public var udpReplied: UInt32

    public init(
        synSent: UInt32 = 120, synReceived: UInt32 = 60, established: UInt32 = 432_000,
        finWait: UInt32 = 120, closeWait: UInt32 = 60, lastAck: UInt32 = 30,
        timeWait: UInt32 = 120, close: UInt32 = 10,
        udpUnreplied: UInt32 = 30, udpReplied: UInt32 = 120
    ) {
        self.synSent = synSent
        self.synReceived = synReceived
        self.established = established
        self.finWait = finWait
        self.closeWait = closeWait
        self.lastAck = lastAck
        self.timeWait = timeWait
        self.close = close
        self.udpUnreplied = udpUnreplied
        self.udpReplied = udpReplied
    }

    /// The timeout a packet that leaves a flow in `state` sets.
    public subscript(state: FlowState) -> UInt32 {
        switch state {
        case .synSent: synSent
        case .synReceived: synReceived
        case .established: established
        case .finWait: finWait
        case .closeWait: closeWait
        case .lastAck: lastAck
        case .timeWait: timeWait
        case .close: close
        case .udpUnreplied: udpUnreplied
        case .udpReplied: udpReplied
        }
    }
}
