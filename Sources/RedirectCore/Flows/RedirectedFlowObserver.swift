/// Told when a redirected flow enters or leaves the table, so that a copy of the table's
/// answers kept elsewhere (the kernel's getsockopt hook: Daemon/NativeAnswers) can never
/// disagree with it.
///
/// Calls are made under the lock of the flow's shard, in the order the table changes, on the
/// thread that changed it: a datapath thread (a flow created by a SYN, before the SYN's
/// verdict is given; a flow closed, replaced or evicted), the housekeeping sweep (expiry), a
/// lookup that met an expired flow, or a restore. Both tuples of a flow belong to one shard,
/// so for one (target, client) pair a start and an end are never reordered. An implementation
/// must be quick, must not allocate per call and must not call back into the table.
public protocol RedirectedFlowObserver: AnyObject, Sendable {
    /// `flow` now exists: a proxy's socket `flow.target <-> flow.client` was going to
    /// `flow.originalDestination`.
    func redirectedFlowStarted(_ flow: RedirectedFlow)
    /// `flow` has left the table (closed, expired, evicted or replaced).
    func redirectedFlowEnded(_ flow: RedirectedFlow)
}

/// What an observer learns of a redirected flow: the proxy-side pair and the answer.
public struct RedirectedFlow: Hashable, Sendable {
    public var proto: TransportProtocol
    public var client: Endpoint
    /// The redirect target: the proxy's end of the connection.
    public var target: Endpoint
    public var originalDestination: Endpoint

    public init(proto: TransportProtocol, client: Endpoint, target: Endpoint, originalDestination: Endpoint) {
        self.proto = proto
        self.client = client
        self.target = target
        self.originalDestination = originalDestination
    }
}

extension FlowSlot {
    /// The observer's view of a redirected flow; nil for a tracked-only one.
    var redirectedFlow: RedirectedFlow? {
        guard flags.contains(.redirected) else { return nil }
        return RedirectedFlow(
            proto: proto, client: clientEndpoint, target: replySourceEndpoint,
            originalDestination: originalDestinationEndpoint)
    }
}
