/// Chooses the address a redirected flow is sent to, as the kernel's REDIRECT target does
/// (net/netfilter/nf_nat_redirect.c):
/// - from the network: the primary (first, not secondary) IPv4 address of the interface the
///   packet came in on; for IPv6 the first address of that interface that is not tentative and
///   whose scope (link-local or not) matches the original destination's;
/// - from local programs: 127.0.0.1 or ::1.
///
/// An immutable snapshot: the daemon builds a new one when rtnetlink reports a change and
/// swaps it in, so datapath threads read it without locking each other out.
public final class RedirectAddressBook: Sendable {
    private let ipv4Primary: [UInt32: IPAddress]
    private let ipv6Usable: [UInt32: [IPAddress]]

    public init(_ addresses: [InterfaceAddress]) {
        var ipv4: [UInt32: IPAddress] = [:]
        var ipv6: [UInt32: [IPAddress]] = [:]
        for entry in addresses {
            if entry.address.isIPv4 {
                if !entry.isSecondary && ipv4[entry.interfaceIndex] == nil {
                    ipv4[entry.interfaceIndex] = entry.address
                }
            } else if !entry.isTentative {
                ipv6[entry.interfaceIndex, default: []].append(entry.address)
            }
        }
        self.ipv4Primary = ipv4
        self.ipv6Usable = ipv6
    }

    public static let empty = RedirectAddressBook([])

    /// The new destination address for a flow, or nil when the interface has no usable
    /// address (the kernel drops such packets).
    public func redirectAddress(hook: PacketMetadata.Hook, inputInterface: UInt32, originalDestination: IPAddress) -> IPAddress? {
        switch hook {
        case .localOut:
            return originalDestination.isIPv4 ? .ipv4Loopback : .ipv6Loopback
        case .preRouting:
            if originalDestination.isIPv4 {
                return ipv4Primary[inputInterface]
            }
            let wantLinkLocal = originalDestination.isIPv6LinkLocal
            return ipv6Usable[inputInterface]?.first { $0.isIPv6LinkLocal == wantLinkLocal }
        }
    }
}
