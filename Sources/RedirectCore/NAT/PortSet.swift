/// A set of ports, matched in O(1) by a 65536-bit bitmap, and kept as the ranges it was
/// written as so rules can be printed back (`80,443,8000-8100`).
public struct PortSet: Hashable, Sendable, CustomStringConvertible {
    public private(set) var ranges: [ClosedRange<UInt16>]
    private var bits: [UInt64]

    public init(_ ranges: [ClosedRange<UInt16>]) {
        self.ranges = ranges
        self.bits = Array(repeating: 0, count: 1024)
        for range in ranges {
            for port in range { bits[Int(port) >> 6] |= 1 << UInt64(port & 63) }
        }
    }

    /// Parses `80`, `80,443` or `8000-8100,9000`. Port 0 is not a port.
    public init(parsing text: some StringProtocol) throws(PortSetError) {
        var ranges: [ClosedRange<UInt16>] = []
        for item in text.split(separator: ",", omittingEmptySubsequences: false) {
            let bounds = item.split(separator: "-", omittingEmptySubsequences: false)
            guard (1...2).contains(bounds.count) else { throw .malformed(String(item)) }
            var values: [UInt16] = []
            for bound in bounds {
                guard !bound.isEmpty, bound.allSatisfy({ $0.isASCII && $0.isNumber }) else {
                    throw .malformed(String(item))
                }
                guard let value = Int(bound), (1...65535).contains(value) else {
                    throw .outOfRange(String(bound))
                }
                values.append(UInt16(value))
            }
            guard values[0] <= values[values.count - 1] else { throw .reversedRange(String(item)) }
            ranges.append(values[0]...values[values.count - 1])
        }
        self.init(ranges)
    }

    public func contains(_ port: UInt16) -> Bool {
        bits.withUnsafeBufferPointer { $0[Int(port) >> 6] & (1 << UInt64(port & 63)) != 0 }
    }

    public var isEmpty: Bool { ranges.isEmpty }

    /// `80,443,8000-8100`: the form iptables' multiport and nftables' sets both accept
    /// (nftables with `-` as well).
    public var description: String {
        ranges.map { $0.lowerBound == $0.upperBound ? "\($0.lowerBound)" : "\($0.lowerBound)-\($0.upperBound)" }
            .joined(separator: ",")
    }

    public static func == (lhs: PortSet, rhs: PortSet) -> Bool { lhs.bits == rhs.bits }
    public func hash(into hasher: inout Hasher) { hasher.combine(bits) }
}

public enum PortSetError: Error, Equatable, CustomStringConvertible {
    case malformed(String)
    case outOfRange(String)
    case reversedRange(String)

    public var description: String {
        switch self {
        case .malformed(let item): "'\(item)' is not a port or a range like 8000-8100"
        case .outOfRange(let item): "port \(item) is out of range (1-65535)"
        case .reversedRange(let item): "range '\(item)' ends before it starts"
        }
    }
}
