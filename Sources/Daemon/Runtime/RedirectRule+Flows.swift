import RedirectCore

extension RedirectRule {
    /// Whether `flow` was redirected by this rule (protocol, original port, target port).
    func carries(_ flow: FlowRecord) -> Bool {
        flow.proto == proto && flow.redirectTarget?.port == toPort && ports.contains(flow.originalDestination.port)
    }
}
