/// An IPv4 or IPv6 address in 16 bytes, so one flow-table layout serves both families.
///
/// IPv4 addresses are held IPv4-mapped (`::ffff:a.b.c.d`). The packet parser rejects IPv6
/// packets that carry mapped addresses, so the two families never collide in the table.
/// `high` and `low` are the address bytes read big-endian: `high` holds bytes 0...7.
public struct IPAddress: Hashable, Comparable, Sendable {
    public var high: UInt64
    public var low: UInt64

    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// `value` is the address as a host-order integer (`0x7f000001` is 127.0.0.1).
    public init(ipv4 value: UInt32) {
        self.high = 0
        self.low = 0x0000_ffff_0000_0000 | UInt64(value)
    }

    public static let ipv4Loopback = IPAddress(ipv4: 0x7f00_0001)
    public static let ipv6Loopback = IPAddress(high: 0, low: 1)
    public static let ipv4Any = IPAddress(ipv4: 0)
    public static let ipv6Any = IPAddress(high: 0, low: 0)

    public var family: AddressFamily { isIPv4 ? .ipv4 : .ipv6 }

    public var isIPv4: Bool { high == 0 && (low >> 32) == 0xffff }

    /// The IPv4 address as a host-order integer; meaningful only when `isIPv4`.
    public var ipv4Value: UInt32 { UInt32(truncatingIfNeeded: low) }

    /// True for fe80::/10, the scope the kernel's IPv6 REDIRECT matches separately.
    public var isIPv6LinkLocal: Bool { !isIPv4 && (high >> 54) == (0xfe80 >> 6) }

    public var isLoopback: Bool {
        isIPv4 ? (ipv4Value >> 24) == 127 : self == .ipv6Loopback
    }

    public static func < (lhs: IPAddress, rhs: IPAddress) -> Bool {
        (lhs.high, lhs.low) < (rhs.high, rhs.low)
    }

    /// Reads 4 (IPv4) or 16 (IPv6) network-order bytes at `offset`.
    @inlinable
    public init(reading bytes: UnsafeRawBufferPointer, at offset: Int, family: AddressFamily) {
        switch family {
        case .ipv4:
            self.init(ipv4: bytes.loadBigEndianUInt32(at: offset))
        case .ipv6:
            self.init(
                high: bytes.loadBigEndianUInt64(at: offset),
                low: bytes.loadBigEndianUInt64(at: offset + 8))
        }
    }

    /// Writes the address in network order: 4 bytes for IPv4, 16 for IPv6.
    @inlinable
    public func write(to bytes: UnsafeMutableRawBufferPointer, at offset: Int) {
        if isIPv4 {
            bytes.storeBigEndian(ipv4Value, at: offset)
        } else {
            bytes.storeBigEndian(high, at: offset)
            bytes.storeBigEndian(low, at: offset + 8)
        }
    }

    /// The 16-bit words of the address as they sit on the wire (2 for IPv4, 8 for IPv6),
    /// for one's-complement checksum arithmetic.
    @inlinable
    public var checksumWordSum: UInt32 {
        if isIPv4 {
            let v = ipv4Value
            return (v >> 16) &+ (v & 0xffff)
        }
        return Self.wordSum(high) &+ Self.wordSum(low)
    }

    @inlinable
    static func wordSum(_ word: UInt64) -> UInt32 {
        UInt32(truncatingIfNeeded: word >> 48) &+ UInt32(truncatingIfNeeded: (word >> 32) & 0xffff)
            &+ UInt32(truncatingIfNeeded: (word >> 16) & 0xffff) &+ UInt32(truncatingIfNeeded: word & 0xffff)
    }
}

public enum AddressFamily: UInt8, Sendable, CaseIterable {
    case ipv4 = 4
    case ipv6 = 6

    /// Bytes in an address of this family.
    public var addressLength: Int { self == .ipv4 ? 4 : 16 }
}
