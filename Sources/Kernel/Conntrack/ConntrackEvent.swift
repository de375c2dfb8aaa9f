import RedirectCore

/// One conntrack entry as ctnetlink reports it: an event (NEW, UPDATE, DESTROY) or, from a
/// dump, the entry's current state (`.update`). TCP and UDP entries only; the others are
/// counted as filtered and never become events.
public struct ConntrackEvent: Hashable, Sendable, CustomStringConvertible {
    public enum Kind: UInt8, Hashable, Sendable, CustomStringConvertible {
        /// The entry was confirmed (its first packet left the netfilter hooks).
        case new
        /// Its status, TCP state, mark or timeout changed; every dumped entry, too.
        case update
        /// It was removed (timed out, `conntrack -D`, flushed).
        case destroy

        public var description: String {
            switch self {
            case .new: "NEW"
            case .update: "UPDATE"
            case .destroy: "DESTROY"
            }
        }
    }

    public var kind: Kind
    /// The flow as its first packet had it (the client's view: source = client).
    public var original: FlowTuple
    /// The answering side's view after NAT: after REDIRECT its source is the proxy's
    /// address and port (the NAT target), its destination the client.
    public var reply: FlowTuple
    /// The kernel's TCP state; nil for UDP and for TCP messages that carry none (an UPDATE
    /// caused by something else than a state change).
    public var tcpState: ConntrackTCPState?
    /// The conntrack mark (ctmark); 0 when the kernel sent none.
    public var mark: UInt32
    /// The entry's IPS_* status bits.
    public var status: ConntrackStatus
    /// The kernel's id of the entry (CTA_ID), stable for its lifetime; 0 when absent.
    public var id: UInt32
    /// Seconds until the kernel drops the entry if nothing else happens (CTA_TIMEOUT; every
    /// message but a destroy carries it); nil when absent.
    public var timeout: UInt32?

    public init(
        kind: Kind, original: FlowTuple, reply: FlowTuple, tcpState: ConntrackTCPState? = nil, mark: UInt32 = 0,
        status: ConntrackStatus = [], id: UInt32 = 0, timeout: UInt32? = nil
    ) {
        self.kind = kind
        self.original = original
        self.reply = reply
        self.tcpState = tcpState
        self.mark = mark
        self.status = status
        self.id = id
        self.timeout = timeout
    }

    public var proto: TransportProtocol { original.proto }
    /// IPS_ASSURED: traffic was seen both ways (TCP: the handshake completed), so the kernel
    /// will not drop the entry early when its table is full.
    public var isAssured: Bool { status.contains(.assured) }
    /// IPS_SEEN_REPLY: a packet was seen in the reply direction.
    public var hasSeenReply: Bool { status.contains(.seenReply) }

    /// `[NEW] tcp 10.0.0.1:40000 -> 10.0.0.2:80 reply 127.0.0.1:8080 -> 10.0.0.1:40000 SYN_SENT mark 0x1000000`
    public var description: String {
        var text = "[\(kind)] \(original) reply \(reply.source) -> \(reply.destination)"
        if let tcpState { text += " \(tcpState)" }
        if isAssured { text += " ASSURED" } else if hasSeenReply { text += " SEEN_REPLY" }
        return text + " mark 0x\(String(mark, radix: 16))"
    }
}

/// The kernel's TCP_CONNTRACK_* states (include/uapi/linux/netfilter/nf_conntrack_tcp.h),
/// with the kernel's numbers.
public enum ConntrackTCPState: UInt8, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    case none = 0
    case synSent = 1
    case synReceived = 2
    case established = 3
    case finWait = 4
    case closeWait = 5
    case lastAck = 6
    case timeWait = 7
    case close = 8
    /// A SYN answered by a SYN (simultaneous open); was TCP_CONNTRACK_LISTEN.
    case synSent2 = 9

    /// conntrack(8)'s names; the states the flow table keeps have the same numbers and names
    /// (`FlowState`).
    public var description: String {
        switch self {
        case .none: "NONE"
        case .synSent2: "SYN_SENT2"
        default: FlowState(rawValue: rawValue)?.description ?? "\(rawValue)"
        }
    }
}

/// The IPS_* status bits of a conntrack entry (include/uapi/linux/netfilter/nf_conntrack_common.h).
public struct ConntrackStatus: OptionSet, Hashable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let expected = ConntrackStatus(rawValue: 1 << 0)
    public static let seenReply = ConntrackStatus(rawValue: 1 << 1)
    public static let assured = ConntrackStatus(rawValue: 1 << 2)
    public static let confirmed = ConntrackStatus(rawValue: 1 << 3)
    public static let sourceNAT = ConntrackStatus(rawValue: 1 << 4)
    public static let destinationNAT = ConntrackStatus(rawValue: 1 << 5)
    public static let dying = ConntrackStatus(rawValue: 1 << 9)
    public static let offload = ConntrackStatus(rawValue: 1 << 14)
}

/// How a receive of conntrack events ended.
public enum ConntrackReceiveResult: Sendable, Equatable {
    /// Events were appended (possibly none, when every message was filtered out).
    case received
    case timedOut
    case interrupted
    /// The kernel dropped events because the socket's receive buffer was full (ENOBUFS).
    /// Events appended before the loss are still valid; the caller must resync with `dump`.
    case overrun
}

/// Totals of one event source, for metrics.
public struct ConntrackEventCounters: Sendable, Equatable {
    /// Events handed to the caller.
    public var received: UInt64 = 0
    /// Messages dropped in user space: not TCP or UDP, or a mark outside the filter (the
    /// kernel-side filter drops the rest before they reach the socket, uncounted).
    public var filtered: UInt64 = 0
    /// ENOBUFS on receive: events were lost.
    public var overruns: UInt64 = 0
    /// Messages that could not be read (truncated, malformed, without tuples).
    public var parseErrors: UInt64 = 0

    public init() {}
}
