/// Why a flow left the table.
public enum FlowEndReason: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    /// Its timeout ran out while the connection was still open (idle, or a handshake that never finished).
    case expired = 1
    /// The connection ended: reset before any reply, or timed out in TIME_WAIT / CLOSE.
    case closed
    /// Dropped early, while not yet assured, to make room for a new flow in a full table.
    case evicted
    /// A new connection reused its tuple (a SYN after TIME_WAIT / CLOSE).
    case replaced

    public var description: String {
        switch self {
        case .expired: "expired"
        case .closed: "closed"
        case .evicted: "evicted"
        case .replaced: "replaced"
        }
    }
}
