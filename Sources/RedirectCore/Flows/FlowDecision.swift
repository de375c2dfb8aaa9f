/// What the redirect policy decides for a packet that could start a new flow: one type from
/// the policy, which knows the rule's port (`RedirectPolicy.Decision`, `Target` = the port),
/// to the flow table, which is handed the whole endpoint once the engine has chosen the
/// redirect address (`FlowDecision`, `Target` = the endpoint).
public enum RedirectDecision<Target: Hashable & Sendable>: Hashable, Sendable {
    /// Track the flow and send it to this target (the proxy).
    case redirect(to: Target)
    /// Track the flow without rewriting it (so lookups answer NOTREDIRECTED, not NOTFOUND):
    /// the flow went to a proxy port directly (the classic self-connect loop).
    case trackOnly
    /// Leave it alone: no flow is created.
    case ignore
}

/// The decision the flow table acts on.
public typealias FlowDecision = RedirectDecision<Endpoint>
