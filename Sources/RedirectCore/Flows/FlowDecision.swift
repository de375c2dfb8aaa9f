/// What the redirect policy wants for a packet that could start a new flow.
public enum FlowDecision: Hashable, Sendable {
    /// Track the flow and send it to this local endpoint (the proxy).
    case redirect(to: Endpoint)
    /// Track the flow without rewriting it (so lookups answer NOTREDIRECTED, not NOTFOUND).
    case trackOnly
    /// Leave it alone: no flow is created.
    case ignore
}
