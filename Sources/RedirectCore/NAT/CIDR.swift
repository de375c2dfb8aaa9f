/// An address prefix such as `10.0.0.0/8` or `2001:db8::/32`.
public struct CIDR: Hashable, Sendable, CustomStringConvertible {
    public var network: IPAddress
    /// Prefix length within the address family (0...32 for IPv4, 0...128 for IPv6).
    public var prefixLength: UInt8

    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), let address = IPAddress(parts[0]) else { return nil }
        let maxLength = address.isIPv4 ? 32 : 128
        var length = maxLength
        if parts.count == 2 {
            guard parts[1].allSatisfy({ $0.isASCII && $0.isNumber }), let value = Int(parts[1]),
                value <= maxLength
            else { return nil }
            length = value
        }
        self.prefixLength = UInt8(length)
        self.network = address
        self.network = masked(address)
    }

    public func contains(_ address: IPAddress) -> Bool {
        address.isIPv4 == network.isIPv4 && masked(address) == network
    }

    /// Applies the prefix to a 128-bit address, counting IPv4 bits inside the mapped form.
    private func masked(_ address: IPAddress) -> IPAddress {
        let bits = Int(prefixLength) + (network.isIPv4 ? 96 : 0)
        let highMask: UInt64 = bits >= 64 ? .max : (bits == 0 ? 0 : ~0 << UInt64(64 - bits))
        let lowMask: UInt64 = bits <= 64 ? 0 : (bits >= 128 ? .max : ~0 << UInt64(128 - bits))
        return IPAddress(high: address.high & highMask, low: address.low & lowMask)
    }

    public var description: String { "\(network)/\(prefixLength)" }
}
