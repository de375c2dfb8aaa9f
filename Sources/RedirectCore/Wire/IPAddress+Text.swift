// Textual IPv4 / IPv6 addresses, in pure Swift so the core needs no libc.

extension IPAddress: CustomStringConvertible, LosslessStringConvertible {
    /// Parses dotted-quad IPv4 or RFC 4291 IPv6 text (with `::` and a trailing dotted quad).
    /// IPv6 text is written plain, without brackets or a zone.
    public init?(_ text: some StringProtocol) {
        if text.contains(":") {
            guard let words = Self.parseIPv6Words(Substring(text)) else { return nil }
            var high: UInt64 = 0
            var low: UInt64 = 0
            for i in 0..<4 { high = high << 16 | UInt64(words[i]) }
            for i in 4..<8 { low = low << 16 | UInt64(words[i]) }
            // An IPv4-mapped IPv6 text names the same address as the dotted quad.
            self.init(high: high, low: low)
        } else {
            guard let v4 = Self.parseIPv4(Substring(text)) else { return nil }
            self.init(ipv4: v4)
        }
    }

    public var description: String {
        if isIPv4 {
            let v = ipv4Value
            return "\(v >> 24).\((v >> 16) & 0xff).\((v >> 8) & 0xff).\(v & 0xff)"
        }
        let words: [UInt16] = (0..<8).map { i in
            let source = i < 4 ? high : low
            return UInt16(truncatingIfNeeded: source >> (UInt64(3 - i % 4) * 16))
        }
        // RFC 5952: compress the longest run (length >= 2) of zero words, the first on a tie.
        var bestStart = -1, bestLength = 0, runStart = -1
        for i in 0...8 {
            if i < 8 && words[i] == 0 {
                if runStart < 0 { runStart = i }
            } else if runStart >= 0 {
                if i - runStart > bestLength { bestStart = runStart; bestLength = i - runStart }
                runStart = -1
            }
        }
        if bestLength < 2 { bestStart = -1 }
        var text = ""
        var i = 0
        while i < 8 {
            if i == bestStart {
                text += "::"
                i += bestLength
                continue
            }
            if !text.isEmpty && !text.hasSuffix(":") { text += ":" }
            text += String(words[i], radix: 16)
            i += 1
        }
        return text
    }

    static func parseIPv4(_ text: Substring) -> UInt32? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var value: UInt32 = 0
        for part in parts {
            guard (1...3).contains(part.count), part.allSatisfy({ $0.isASCII && $0.isNumber }),
                let octet = UInt32(part), octet <= 255,
                !(part.count > 1 && part.first == "0")
            else { return nil }
            value = value << 8 | octet
        }
        return value
    }

    static func parseIPv6Words(_ text: Substring) -> [UInt16]? {
        guard text.count <= 45 else { return nil }
        // Split at the one allowed "::" without Foundation.
        var halves: [String] = []
        if let range = text.firstRange(of: "::") {
            halves = [String(text[..<range.lowerBound]), String(text[range.upperBound...])]
            guard !halves[1].contains("::") else { return nil }
        } else {
            halves = [String(text)]
        }
        func words(_ part: String, allowIPv4Tail: Bool) -> [UInt16]? {
            if part.isEmpty { return [] }
            var result: [UInt16] = []
            let groups = part.split(separator: ":", omittingEmptySubsequences: false)
            for (index, group) in groups.enumerated() {
                if allowIPv4Tail && index == groups.count - 1 && group.contains(".") {
                    guard let v4 = parseIPv4(group) else { return nil }
                    result.append(UInt16(v4 >> 16))
                    result.append(UInt16(v4 & 0xffff))
                    continue
                }
                guard (1...4).contains(group.count), group.allSatisfy({ $0.isHexDigit }),
                    let word = UInt16(group, radix: 16)
                else { return nil }
                result.append(word)
            }
            return result
        }
        if halves.count == 1 {
            guard let all = words(halves[0], allowIPv4Tail: true), all.count == 8 else { return nil }
            return all
        }
        guard let head = words(halves[0], allowIPv4Tail: false),
            let tail = words(halves[1], allowIPv4Tail: true),
            head.count + tail.count <= 7
        else { return nil }
        return head + Array(repeating: 0, count: 8 - head.count - tail.count) + tail
    }
}
