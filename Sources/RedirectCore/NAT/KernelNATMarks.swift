/// The packet marks of kernel-nat mode: which mark tells the kernel's NAT rules to send a
/// flow to which port.
///
/// In kernel-nat mode the daemon's verdict on a flow's first packet sets a mark inside `mask`,
/// one value per redirect port; the daemon's nat-table chains hold one
/// `-m mark --mark VALUE/MASK -j REDIRECT --to-ports PORT` per value, after a CONNMARK rule
/// that keeps the mark on the conntrack entry (so the daemon hears only of its own flows).
/// Bits outside the mask are the packet's own and are kept.
///
/// Values count up from the mask's lowest bit: with mask 0x0ff00000 the first port gets
/// 0x00100000, the second 0x00200000, up to 255 ports. The ports are sorted, so the same
/// rules always give the same marks and a reload keeps the marks of the ports it keeps.
public struct KernelNATMarks: Hashable, Sendable {
    public let mask: UInt32
    /// The redirect ports in mark order: `ports[i]` has the value `(i + 1) << shift`.
    public let ports: [UInt16]

    public static let defaultMask: UInt32 = 0x0ff0_0000

    /// Nil when the mask is zero or has too few bits for `ports` (the caller says why).
    public init?(mask: UInt32, ports: some Sequence<UInt16>) {
        let sorted = Array(Set(ports)).sorted()
        guard mask != 0, sorted.count <= Self.capacity(of: mask) else { return nil }
        self.mask = mask
        self.ports = sorted
    }

    /// How many ports a mask can tell apart: the values its contiguous low bits hold, less zero.
    public static func capacity(of mask: UInt32) -> Int {
        guard mask != 0 else { return 0 }
        let shifted = UInt64(mask >> UInt32(mask.trailingZeroBitCount))
        // Only the run of bits from the lowest one counts (values are multiples of that bit).
        let run = (~shifted).trailingZeroBitCount
        return (1 << min(run, 31)) - 1
    }

    private var shift: UInt32 { UInt32(mask.trailingZeroBitCount) }

    /// The mark value (inside `mask`) for flows redirected to `port`, or nil for a port of no rule.
    @inline(__always)
    public func value(for port: UInt16) -> UInt32? {
        // A handful of ports: a linear scan beats hashing and allocates nothing.
        for index in ports.indices where ports[index] == port { return UInt32(index + 1) << shift }
        return nil
    }

    /// The mark value of the `number`th port (1-based), whether or not that many ports are
    /// configured now: flows marked under an earlier configuration may carry it.
    @inline(__always)
    public func value(number: Int) -> UInt32 { UInt32(truncatingIfNeeded: number) << shift & mask }

    /// `existing` with its bits inside the mask replaced by `value`.
    @inline(__always)
    public func applying(_ value: UInt32, to existing: UInt32) -> UInt32 {
        (existing & ~mask) | (value & mask)
    }
}
