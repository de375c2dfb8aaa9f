/// The transport protocols the daemon tracks and redirects.
public enum TransportProtocol: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case tcp = 6
    case udp = 17

    public init?(name: some StringProtocol) {
        switch name.lowercased() {
        case "tcp": self = .tcp
        case "udp": self = .udp
        default: return nil
        }
    }

    public var description: String { self == .tcp ? "tcp" : "udp" }
}

/// One end of a transport connection.
public struct Endpoint: Hashable, Sendable, CustomStringConvertible {
    public var address: IPAddress
    public var port: UInt16

    public init(_ address: IPAddress, _ port: UInt16) {
        self.address = address
        self.port = port
    }

    /// `1.2.3.4:80` or `[2001:db8::1]:80`.
    public var description: String {
        address.isIPv4 ? "\(address):\(port)" : "[\(address)]:\(port)"
    }
}

/// A flow as seen in one direction: protocol, source and destination.
/// Like the kernel's `nf_conntrack_tuple`: a flow has an ORIGINAL tuple (as the client sent it)
/// and a REPLY tuple (what the answering side sends back, after NAT).
public struct FlowTuple: Hashable, Sendable, CustomStringConvertible {
    public var proto: TransportProtocol
    public var source: Endpoint
    public var destination: Endpoint

    public init(proto: TransportProtocol, source: Endpoint, destination: Endpoint) {
        self.proto = proto
        self.source = source
        self.destination = destination
    }

    /// The same flow seen from the other end.
    public var reversed: FlowTuple {
        FlowTuple(proto: proto, source: destination, destination: source)
    }

    public var description: String { "\(proto) \(source) -> \(destination)" }
}
