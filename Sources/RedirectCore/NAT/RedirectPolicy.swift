/// Decides, for the first packet of a flow, what the daemon does with it.
public struct RedirectPolicy: Sendable {
    /// `.redirect(to:)` names the port on the redirect address (chosen by `RedirectAddressBook`).
    public typealias Decision = RedirectDecision<UInt16>

    public let rules: [RedirectRule]
    /// Every rule's target port, per protocol, so direct connections to a proxy are seen.
    private let proxyPorts: [TransportProtocol: PortSet]

    public init(rules: [RedirectRule]) {
        self.rules = rules
        var ports: [TransportProtocol: [ClosedRange<UInt16>]] = [:]
        for rule in rules { ports[rule.proto, default: []].append(rule.toPort...rule.toPort) }
        self.proxyPorts = ports.mapValues { PortSet($0) }
    }

    public func decide(_ tuple: FlowTuple, hook: PacketMetadata.Hook) -> Decision {
        let scope: RedirectRule.Scope = hook == .preRouting ? .network : .local
        let family = tuple.destination.address.family
        for rule in rules
        where rule.scope == scope && rule.proto == tuple.proto && rule.families.contains(family)
            && rule.ports.contains(tuple.destination.port)
            && Self.matches(rule.sources, tuple.source.address)
            && Self.matches(rule.destinations, tuple.destination.address)
        {
            return .redirect(to: rule.toPort)
        }
        if proxyPorts[tuple.proto]?.contains(tuple.destination.port) == true {
            return .trackOnly
        }
        return .ignore
    }

    private static func matches(_ prefixes: [CIDR], _ address: IPAddress) -> Bool {
        prefixes.isEmpty || prefixes.contains { $0.contains(address) }
    }
}
