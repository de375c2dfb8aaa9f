import Glibc
import RedirectCore

/// The transport tuple of a connected socket, read from the kernel: what a proxy's accepted
/// socket says about its peer (the client) and its own end (the local address).
public struct SocketTuple: Equatable, Sendable {
    public var proto: TransportProtocol
    public var peer: Endpoint
    public var local: Endpoint

    public enum Failure: Error, Equatable, CustomStringConvertible {
        case notASocket
        case unsupportedProtocol
        case notConnected
        case system(String, Int32)

        public var description: String {
            switch self {
            case .notASocket: "descriptor is not an IP socket"
            case .unsupportedProtocol: "socket is neither TCP nor UDP"
            case .notConnected: "socket has no peer (not connected)"
            case .system(let call, let code): "\(call): \(String(cString: strerror(code)))"
            }
        }
    }

    /// Reads protocol, peer and local address of `fd`. IPv4-mapped IPv6 addresses (a v6
    /// socket talking to a v4 peer) come back as plain IPv4, as the daemon tracks them.
    public static func of(_ fd: Int32) -> Result<SocketTuple, Failure> {
        var value: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &value, &length) == 0 else {
            return .failure(errno == ENOTSOCK ? .notASocket : .system("getsockopt(SO_PROTOCOL)", errno))
        }
        let proto: TransportProtocol
        switch value {
        case Int32(IPPROTO_TCP): proto = .tcp
        case Int32(IPPROTO_UDP): proto = .udp
        default: return .failure(.unsupportedProtocol)
        }
        guard let local = endpoint(fd, getsockname) else { return .failure(.notASocket) }
        guard let peer = endpoint(fd, getpeername) else {
            return .failure(errno == ENOTCONN ? .notConnected : .notASocket)
        }
        return .success(SocketTuple(proto: proto, peer: peer, local: local))
    }

    private static func endpoint(_ fd: Int32, _ call: (Int32, UnsafeMutablePointer<sockaddr>, UnsafeMutablePointer<socklen_t>) -> Int32) -> Endpoint?
    {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let result = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { call(fd, $0, &length) }
        }
        guard result == 0 else { return nil }
        return Endpoint(socketAddress: storage)
    }
}

extension Endpoint {
    /// The endpoint of an AF_INET or AF_INET6 socket address (v4-mapped IPv6 read as IPv4).
    public init?(socketAddress storage: sockaddr_storage) {
        var storage = storage
        switch Int32(storage.ss_family) {
        case AF_INET:
            let address = withUnsafeBytes(of: &storage) { $0.load(as: sockaddr_in.self) }
            self.init(IPAddress(ipv4: UInt32(bigEndian: address.sin_addr.s_addr)), UInt16(bigEndian: address.sin_port))
        case AF_INET6:
            let address = withUnsafeBytes(of: &storage) { $0.load(as: sockaddr_in6.self) }
            let ip = withUnsafeBytes(of: address.sin6_addr) { IPAddress(reading: $0, at: 0, family: .ipv6) }
            self.init(ip, UInt16(bigEndian: address.sin6_port))
        default:
            return nil
        }
    }
}
