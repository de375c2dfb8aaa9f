import Kernel

extension FirewallMark: CustomStringConvertible {
    /// Parses `0x1`, `1` or `0x100/0xff00` (value/mask, hex or decimal).
    public init?(parsing text: some StringProtocol) {
        let parts = Substring(text).split(separator: "/", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), let value = Self.number(parts[0]) else { return nil }
        let mask = parts.count == 2 ? Self.number(parts[1]) : 0xffff_ffff
        guard let mask else { return nil }
        self.init(value: value, mask: mask)
    }

    private static func number(_ text: Substring) -> UInt32? {
        text.lowercased().hasPrefix("0x") ? UInt32(text.dropFirst(2), radix: 16) : UInt32(text)
    }

    public var description: String {
        mask == 0xffff_ffff ? "0x\(String(value, radix: 16))" : "0x\(String(value, radix: 16))/0x\(String(mask, radix: 16))"
    }
}
