/// Where a tracked flow is in its life. The TCP states are the kernel conntrack's
/// (`nf_conntrack_proto_tcp.c`, printed the same way); UDP has no handshake, only whether an
/// answer has come back yet.
public enum FlowState: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case synSent = 1
    case synReceived
    case established
    case finWait
    case closeWait
    case lastAck
    case timeWait
    case close
    case udpUnreplied
    case udpReplied

    public var isTCP: Bool { rawValue <= FlowState.close.rawValue }

    /// The transport protocol whose flows can be in this state.
    public var proto: TransportProtocol { isTCP ? .tcp : .udp }

    /// TIME_WAIT and CLOSE: the connection is over, the entry only lingers for stray packets.
    /// A flow that times out here ended normally; a new SYN on its tuple starts a new flow.
    public var isFinished: Bool { self == .timeWait || self == .close }

    public var description: String {
        switch self {
        case .synSent: "SYN_SENT"
        case .synReceived: "SYN_RECV"
        case .established: "ESTABLISHED"
        case .finWait: "FIN_WAIT"
        case .closeWait: "CLOSE_WAIT"
        case .lastAck: "LAST_ACK"
        case .timeWait: "TIME_WAIT"
        case .close: "CLOSE"
        case .udpUnreplied: "UNREPLIED"
        case .udpReplied: "REPLIED"
        }
    }
}
