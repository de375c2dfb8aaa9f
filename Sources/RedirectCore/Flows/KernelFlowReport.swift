/// What the kernel's conntrack says about one flow the daemon handed to it (kernel-nat mode):
/// one ctnetlink event or one entry of a dump, reduced to what the flow table keeps.
///
/// In kernel-nat mode the daemon decides a flow's first packet and the kernel's NAT rewrites
/// every packet after it, so the table learns a flow's life from these reports instead of from
/// packets: the state and the time the kernel will keep the entry (CTA_TIMEOUT), whether the
/// proxy has answered and whether the entry is assured, and in the end its destruction.
public struct KernelFlowReport: Sendable, Equatable {
    /// The flow's key in the table: the client as the proxy sees it (the REPLY tuple's
    /// destination) -> the original destination. It is the ORIGINAL tuple unless the kernel's
    /// NAT had to give the client another port (the proxy already had a connection from that
    /// client port: its implicit source NAT picks a free one).
    public var original: FlowTuple
    /// The client as its first packet had it (the ORIGINAL tuple's source), when the kernel's
    /// NAT gave it another port; nil when it did not.
    public var firstPacketClient: Endpoint?
    /// The source of the REPLY tuple: where the kernel's NAT sent the flow (the proxy's end).
    public var replySource: Endpoint
    /// The TCP state (the kernel's TCP_CONNTRACK_* numbers are `FlowState`'s raw values), or
    /// `.udpUnreplied` / `.udpReplied` for UDP; nil when the report carries none (an update
    /// about something else, a destroy): the flow keeps the state it has.
    public var state: FlowState?
    public var seenReply: Bool
    public var assured: Bool
    /// Seconds the kernel keeps the entry from now if nothing else happens (0 when unknown).
    public var timeout: UInt32
    /// The entry is gone from the kernel's table (a DESTROY event).
    public var destroyed: Bool
    /// Read from the kernel's table (a dump or a get), so it describes the entry as it is now;
    /// false for an event, which may describe an older entry on the same tuple.
    public var current: Bool

    public init(
        original: FlowTuple, replySource: Endpoint, state: FlowState?, seenReply: Bool, assured: Bool, timeout: UInt32,
        destroyed: Bool = false, current: Bool = false, firstPacketClient: Endpoint? = nil
    ) {
        self.firstPacketClient = firstPacketClient
        self.original = original
        self.replySource = replySource
        self.state = state
        self.seenReply = seenReply
        self.assured = assured
        self.timeout = timeout
        self.destroyed = destroyed
        self.current = current
    }

    /// The flow's state from the kernel's TCP state number (TCP_CONNTRACK_*) or, for UDP,
    /// whether a reply was seen. Nil for TCP states the table does not keep (NONE, LISTEN,
    /// SYN_SENT2 and beyond).
    public static func state(proto: TransportProtocol, kernelTCPState: UInt8, seenReply: Bool) -> FlowState? {
        switch proto {
        case .udp: return seenReply ? .udpReplied : .udpUnreplied
        case .tcp:
            guard let state = FlowState(rawValue: kernelTCPState), state.isTCP else { return nil }
            return state
        }
    }
}

/// What the table did with a `KernelFlowReport`.
public enum KernelReportOutcome: Sendable, Equatable {
    /// A flow of the table took the kernel's state and timeout.
    case updated
    /// As `.updated`, and the flow's reply tuple moved to where the kernel's NAT really sent it.
    case rekeyed
    /// The kernel has a flow of the daemon's that the table did not (lost to early drop, a
    /// restart without state, or a lost event): it was entered as redirected.
    case adopted
    /// A destroyed flow left the table.
    case removed
    /// Nothing to do: a destroyed flow the table did not hold (or holds only as a newer flow
    /// on the same tuple the kernel has not reported yet), or a flow it could not enter (table
    /// full, reply tuple in use).
    case ignored
}
