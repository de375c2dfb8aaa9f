/// One redirect: traffic of `proto` to one of `ports` goes to `toPort` on this host.
///
/// `scope == .network` is the twin of `iptables -t nat -A PREROUTING ... -j REDIRECT`
/// (the daemon's `--redirect`): the new destination is the primary address of the interface
/// the packet arrived on. `scope == .local` is the OUTPUT twin (`--redirect-local`): the new
/// destination is 127.0.0.1 or ::1.
public struct RedirectRule: Hashable, Sendable, CustomStringConvertible {
    public enum Scope: String, Hashable, Sendable {
        case network
        case local
    }

    public var scope: Scope
    public var proto: TransportProtocol
    public var ports: PortSet
    public var toPort: UInt16
    /// Only flows whose original destination lies in one of these match (empty: any).
    public var destinations: [CIDR]
    /// Only flows whose source lies in one of these match (empty: any).
    public var sources: [CIDR]
    /// Address families the rule applies to (both by default, as the contract says).
    public var families: Set<AddressFamily>

    public init(
        scope: Scope, proto: TransportProtocol, ports: PortSet, toPort: UInt16,
        destinations: [CIDR] = [], sources: [CIDR] = [], families: Set<AddressFamily> = [.ipv4, .ipv6]
    ) {
        self.scope = scope
        self.proto = proto
        self.ports = ports
        self.toPort = toPort
        self.destinations = destinations
        self.sources = sources
        self.families = families
    }

    /// Parses the command-line form `PROTO:PORTS:TOPORT`, e.g. `tcp:80,443:8080`.
    public init(parsing text: some StringProtocol, scope: Scope) throws(RedirectRuleError) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 3 else { throw .malformed(String(text)) }
        guard let proto = TransportProtocol(name: parts[0]) else { throw .unknownProtocol(String(parts[0])) }
        let ports: PortSet
        do {
            ports = try PortSet(parsing: parts[1])
        } catch {
            throw .badPorts(error)
        }
        guard parts[2].allSatisfy({ $0.isASCII && $0.isNumber }), let toPort = Int(parts[2]),
            (1...65535).contains(toPort)
        else { throw .badTargetPort(String(parts[2])) }
        self.init(scope: scope, proto: proto, ports: ports, toPort: UInt16(toPort))
    }

    /// The command-line form, `tcp:80,443:8080`.
    public var description: String { "\(proto):\(ports):\(toPort)" }
}

public enum RedirectRuleError: Error, Equatable, CustomStringConvertible {
    case malformed(String)
    case unknownProtocol(String)
    case badPorts(PortSetError)
    case badTargetPort(String)

    public var description: String {
        switch self {
        case .malformed(let text): "'\(text)' is not PROTO:PORTS:TOPORT (for example tcp:80,443:8080)"
        case .unknownProtocol(let name): "unknown protocol '\(name)' (use tcp or udp)"
        case .badPorts(let error): error.description
        case .badTargetPort(let text): "target port '\(text)' is not a port (1-65535)"
        }
    }
}
