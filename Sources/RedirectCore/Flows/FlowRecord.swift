/// A tracked flow as a plain value: for listing, events and persistence, never the packet path.
public struct FlowRecord: Hashable, Sendable, CustomStringConvertible {
    public var proto: TransportProtocol
    /// The endpoint that opened the flow (source of the original tuple).
    public var client: Endpoint
    /// Where the client sent it (destination of the original tuple).
    public var originalDestination: Endpoint
    /// The local endpoint the flow is redirected to; nil for a flow tracked without redirect.
    public var redirectTarget: Endpoint?
    public var state: FlowState
    /// A packet has been seen in the reply direction.
    public var seenReply: Bool
    /// TCP established with a reply seen, or UDP carrying traffic after its first answer:
    /// such flows are never evicted to make room.
    public var assured: Bool
    /// Seconds on the caller's monotonic clock.
    public var created: UInt32
    /// The flow is gone once the clock reaches this.
    public var expires: UInt32
    /// Packet counters wrap at 2^32 (they are deltas' sources, like SNMP Counter32).
    public var originalPackets: UInt32
    public var originalBytes: UInt64
    public var replyPackets: UInt32
    public var replyBytes: UInt64

    public init(
        proto: TransportProtocol, client: Endpoint, originalDestination: Endpoint, redirectTarget: Endpoint?,
        state: FlowState, seenReply: Bool = false, assured: Bool = false, created: UInt32, expires: UInt32,
        originalPackets: UInt32 = 0, originalBytes: UInt64 = 0, replyPackets: UInt32 = 0, replyBytes: UInt64 = 0
    ) {
        self.proto = proto
        self.client = client
        self.originalDestination = originalDestination
        self.redirectTarget = redirectTarget
        self.state = state
        self.seenReply = seenReply
        self.assured = assured
        self.created = created
        self.expires = expires
        self.originalPackets = originalPackets
        self.originalBytes = originalBytes
        self.replyPackets = replyPackets
        self.replyBytes = replyBytes
    }

    /// As the client sent it: client -> original destination.
    public var originalTuple: FlowTuple {
        FlowTuple(proto: proto, source: client, destination: originalDestination)
    }

    /// As replies travel: redirect target (or the original destination) -> client.
    public var replyTuple: FlowTuple {
        FlowTuple(proto: proto, source: redirectTarget ?? originalDestination, destination: client)
    }

    /// Seconds left before expiry at `now` (0 when expired).
    public func remaining(now: UInt32) -> UInt32 { expires > now ? expires - now : 0 }

    /// Why this record cannot be a flow, or nil when it can.
    public var inconsistency: String? {
        if state.proto != proto { return "state \(state) is not a \(proto) state" }
        if assured && !seenReply { return "assured without a reply seen" }
        if proto == .udp && (state == .udpReplied) != seenReply { return "UDP state \(state) disagrees with the reply flag" }
        return nil
    }

    /// One line in the spirit of `conntrack -L`.
    public var description: String {
        var line = "\(proto) \(state) \(client) -> \(originalDestination)"
        if let redirectTarget { line += " redirected \(redirectTarget)" }
        if !seenReply { line += " [UNREPLIED]" }
        if assured { line += " [ASSURED]" }
        line += " expires=\(expires) packets=\(originalPackets)/\(replyPackets) bytes=\(originalBytes)/\(replyBytes)"
        return line
    }
}
