/// The TCP connection-state machine of the kernel's `nf_conntrack_proto_tcp.c` (`tcp_conntracks`),
/// driven by a segment's flags and direction.
///
/// Deliberate differences, because this table serves a redirect, not a firewall:
/// - No sequence-number window tracking. The kernel's own conntrack still sees (and validates)
///   the client <-> proxy flow after the rewrite. The one check kept (in FlowShard, before this
///   table): a client RST far from the client's sequence numbers is a forged one and is ignored.
/// - No simultaneous open (`SYN_SENT2`): a reply-direction SYN is invalid. The kernel's
///   "server reopens in TIME_WAIT" (reply SYN in TIME_WAIT) is invalid too: a redirected flow
///   can only be restarted by its client.
/// - A new original SYN in TIME_WAIT or CLOSE always restarts the flow (the kernel also requires
///   that the close was initiated with a FIN or an RST from the same side).
enum TCPStateMachine {
    enum Transition: Equatable {
        case move(to: FlowState)
        /// Plausible but not state-changing (a retransmitted SYN/ACK): no refresh.
        case ignore
        /// Not valid in this state: no state change, no refresh, counted.
        case invalid
    }

    /// The kernel's `tcp_bit_set`, from `get_conntrack_index`.
    enum Segment: Int {
        case syn = 0, synAck, fin, ack, rst

        /// nil for a flag combination the kernel's `tcp_valid_flags` rejects (PSH, ECE and CWR
        /// are ignored): SYN+FIN, FIN without ACK, no flags at all, URG on SYN/ACK or RST, and the like.
        init?(flags: TCPFlags) {
            // Raw header bits (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10, URG 0x20, ECE 0x40,
            // CWR 0x80) rather than option-set values: this runs per packet, and literals need no
            // lazy-global access or array building.
            let fin: UInt8 = 0x01
            let syn: UInt8 = 0x02
            let rst: UInt8 = 0x04
            let ack: UInt8 = 0x10
            let urg: UInt8 = 0x20
            let ignored: UInt8 = 0x08 | 0x40 | 0x80
            switch flags.rawValue & ~ignored {
            case syn, syn | urg: self = .syn
            case syn | ack: self = .synAck
            case fin | ack, fin | ack | urg: self = .fin
            case ack, ack | urg: self = .ack
            case rst, rst | ack: self = .rst
            default: return nil
            }
        }
    }

    static func transition(from state: FlowState, on segment: Segment, direction: PacketMetadata.Direction) -> Transition {
        guard state.isTCP else { return .invalid }
        let column = Int(state.rawValue) - 1
        let row = direction == .original ? segment.rawValue : Segment.rst.rawValue + 1 + segment.rawValue
        return table[row * columns + column]
    }

    private static let columns = 8

    // Rows are segments, columns the current state. Transcribed from the kernel's table without its
    // NONE column (only a lone SYN creates a flow, see FlowShard) and SYN_SENT2 column (see above);
    // the kernel's "none" row is all invalid and never reached here because such flags are rejected.
    private static let table: [Transition] = {
        let sSS = Transition.move(to: .synSent)
        let sSR = Transition.move(to: .synReceived)
        let sES = Transition.move(to: .established)
        let sFW = Transition.move(to: .finWait)
        let sCW = Transition.move(to: .closeWait)
        let sLA = Transition.move(to: .lastAck)
        let sTW = Transition.move(to: .timeWait)
        let sCL = Transition.move(to: .close)
        let sIG = Transition.ignore
        let sIV = Transition.invalid
        return [
            // ORIGINAL      sSS  sSR  sES  sFW  sCW  sLA  sTW  sCL
            /* syn    */ sSS, sIG, sIG, sIG, sIG, sIG, sSS, sSS,
            /* synack */ sIV, sSR, sIV, sIV, sIV, sIV, sIV, sIV,
            /* fin    */ sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL,
            /* ack    */ sIV, sES, sES, sCW, sCW, sTW, sTW, sCL,
            /* rst    */ sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL,
            // REPLY         sSS  sSR  sES  sFW  sCW  sLA  sTW  sCL
            /* syn    */ sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV,
            /* synack */ sSR, sIG, sIG, sIG, sIG, sIG, sIG, sIG,
            /* fin    */ sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL,
            /* ack    */ sIG, sSR, sES, sCW, sCW, sTW, sTW, sCL,
            /* rst    */ sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL,
        ]
    }()
}
