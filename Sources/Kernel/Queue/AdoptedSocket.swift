import CNetfilterQueue
import Glibc
import SystemCalls

/// What an inherited descriptor is, read from the kernel (SO_DOMAIN, SO_TYPE, SO_PROTOCOL,
/// SO_ACCEPTCONN, getsockname): a descriptor passed in by the service manager is trusted
/// only once it is the kind of socket its name says.
public struct AdoptedSocket: Equatable, Sendable {
    public var domain: CInt
    public var type: CInt
    public var proto: CInt
    public var listening: Bool
    /// The bound path of an AF_UNIX socket ("" for none, "@name" for an abstract one).
    public var unixPath: String

    public init(domain: CInt, type: CInt, proto: CInt, listening: Bool, unixPath: String = "") {
        self.domain = domain
        self.type = type
        self.proto = proto
        self.listening = listening
        self.unixPath = unixPath
    }

    /// Reads `descriptor`'s identity; nil when it is not a socket (or not open).
    public static func inspect(_ descriptor: CInt) -> AdoptedSocket? {
        func option(_ name: CInt) -> CInt? {
            var value: CInt = 0
            var length = socklen_t(MemoryLayout<CInt>.size)
            return getsockopt(descriptor, SOL_SOCKET, name, &value, &length) == 0 ? value : nil
        }
        guard let domain = option(SO_DOMAIN), let type = option(SO_TYPE), let proto = option(SO_PROTOCOL) else { return nil }
        let path = domain == AF_UNIX ? UnixSocketAddress.boundPath(of: descriptor) ?? "" : ""
        return AdoptedSocket(domain: domain, type: type, proto: proto, listening: option(SO_ACCEPTCONN) == 1, unixPath: path)
    }

    /// Why this is not an NFQUEUE socket (AF_NETLINK, NETLINK_NETFILTER), or nil when it is.
    public var notAQueueSocket: String? {
        guard domain == AF_NETLINK else { return "not a netlink socket (family \(domain))" }
        guard proto == NETLINK_NETFILTER else { return "a netlink socket of protocol \(proto), not NETLINK_NETFILTER" }
        return nil
    }

    /// Why this is not a listening stream socket at `path`, or nil when it is.
    public func notAListener(at path: String) -> String? {
        guard domain == AF_UNIX else { return "not a Unix socket (family \(domain))" }
        guard type == CInt(SOCK_STREAM.rawValue) else { return "not a stream socket (type \(type))" }
        guard listening else { return "not listening" }
        guard unixPath == path else { return "bound to \(unixPath.isEmpty ? "no path" : unixPath), not \(path)" }
        return nil
    }
}
