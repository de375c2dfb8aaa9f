/// What the datapath should do with an original-direction packet (client -> destination).
public enum OriginalOutcome: Hashable, Sendable {
    /// The flow is redirected: write this endpoint as the packet's destination.
    case rewriteDestination(Endpoint)
    /// The flow is tracked but not redirected: pass the packet unchanged.
    case pass
    /// No flow, and this packet may not start one (TCP without a lone SYN, or policy said ignore):
    /// pass it unchanged. Counted.
    case untracked
    /// The packet would start a flow but the table cannot take it. Counted.
    case refused(FlowRefusal)
}

/// What the datapath should do with a reply-direction packet (local target -> client).
public enum ReplyOutcome: Hashable, Sendable {
    /// The flow is redirected: write this endpoint (the original destination) as the packet's source.
    case rewriteSource(Endpoint)
    /// The flow is tracked but not redirected: pass the packet unchanged.
    case pass
    /// No flow matches (replies never create one): pass it unchanged. Counted.
    case untracked
}

/// What the datapath should do with an ICMP error about a flow's packet (related traffic).
public enum RelatedOutcome: Hashable, Sendable {
    /// The flow is redirected: translate the error with this endpoint (see `FlowTable.related`).
    case translate(Endpoint)
    /// The flow is tracked but not redirected: the error is already right; pass it unchanged.
    case notRedirected
    /// The quote is of no live flow, or of one in the other direction: pass it unchanged. Counted.
    case unmatched
}

/// Why a new flow was not created.
public enum FlowRefusal: UInt8, Hashable, Sendable, CustomStringConvertible {
    /// The table is at its limit and no flow that is not yet assured could be evicted.
    case tableFull
    /// Another live flow already owns the reply tuple this flow would get (the same client
    /// endpoint redirected to the same target), so replies could not be told apart. The kernel
    /// drops such a packet at conntrack confirmation too.
    case tupleInUse
    /// The policy wants the flow redirected, but no address of the receiving interface can
    /// be the redirect target: the kernel's REDIRECT drops such a packet too.
    case noRedirectAddress

    public var description: String {
        switch self {
        case .tableFull: "table full"
        case .tupleInUse: "reply tuple in use"
        case .noRedirectAddress: "no redirect address"
        }
    }
}

/// The answer to "where was this connection really going?".
public enum FlowLookupResult: Hashable, Sendable {
    /// The flow was redirected; this is where the client sent it.
    case redirected(original: Endpoint)
    /// The flow is tracked but was not redirected.
    case notRedirected
    /// No flow, and none ended recently.
    case notFound
    /// A flow with this tuple ended recently (remembered in a small bounded memory), and why.
    case expired(FlowEndReason)
}
