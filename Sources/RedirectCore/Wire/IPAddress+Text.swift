// Textual IPv4 / IPv6 addresses, in pure Swift so the core needs no libc. Parsing and
// formatting work on UTF-8 bytes without allocating: the lookup service does both per request.

extension IPAddress: CustomStringConvertible, LosslessStringConvertible {
    /// Parses dotted-quad IPv4 or RFC 4291 IPv6 text (with `::` and a trailing dotted quad).
    /// IPv6 text is written plain, without brackets or a zone.
    public init?(_ text: some StringProtocol) {
        var copy = String(text)
        guard let address = copy.withUTF8({ IPAddress(utf8: UnsafeRawBufferPointer($0)) }) else { return nil }
        self = address
    }

    /// Parses the address text in `utf8` (all of it), or nil if it is not one.
    public init?(utf8 text: UnsafeRawBufferPointer) {
        if text.contains(UInt8(ascii: ":")) {
            guard let (high, low) = Self.parseIPv6(text) else { return nil }
            // An IPv4-mapped IPv6 text names the same address as the dotted quad.
            self.init(high: high, low: low)
        } else {
            guard let v4 = Self.parseIPv4(text[...]) else { return nil }
            self.init(ipv4: v4)
        }
    }

    public var description: String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(Self.maximumTextLength)
        appendText(to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The longest text `appendText` writes (a full IPv6 address with a dotted-quad tail is 45).
    public static let maximumTextLength = 45

    /// Appends the address as text: dotted quad, or RFC 5952 IPv6 (longest zero run compressed).
    public func appendText(to bytes: inout [UInt8]) {
        if isIPv4 {
            let v = ipv4Value
            for shift in stride(from: 24, through: 0, by: -8) {
                appendDecimal(UInt16((v >> UInt32(shift)) & 0xff), to: &bytes)
                if shift > 0 { bytes.append(UInt8(ascii: ".")) }
            }
            return
        }
        func word(_ i: Int) -> UInt16 {
            UInt16(truncatingIfNeeded: (i < 4 ? high : low) >> (UInt64(3 - i % 4) * 16))
        }
        // RFC 5952: compress the longest run (length >= 2) of zero words, the first on a tie.
        var bestStart = -1
        var bestLength = 0
        var runStart = -1
        for i in 0...8 {
            if i < 8 && word(i) == 0 {
                if runStart < 0 { runStart = i }
            } else if runStart >= 0 {
                if i - runStart > bestLength {
                    bestStart = runStart
                    bestLength = i - runStart
                }
                runStart = -1
            }
        }
        if bestLength < 2 { bestStart = -1 }
        var i = 0
        while i < 8 {
            if i == bestStart {
                bytes.append(UInt8(ascii: ":"))
                bytes.append(UInt8(ascii: ":"))
                i += bestLength
                continue
            }
            if i > 0 && bytes.last != UInt8(ascii: ":") { bytes.append(UInt8(ascii: ":")) }
            appendHex(word(i), to: &bytes)
            i += 1
        }
    }

    /// 1-3 decimal digits per octet, no leading zero, exactly four octets.
    static func parseIPv4(_ text: Slice<UnsafeRawBufferPointer>) -> UInt32? {
        var value: UInt32 = 0
        var octets = 0
        var index = text.startIndex
        while true {
            var octet: UInt32 = 0
            var digits = 0
            let first = index
            while index < text.endIndex, let digit = decimalDigit(text[index]) {
                octet = octet * 10 + UInt32(digit)
                digits += 1
                index += 1
                guard digits <= 3 else { return nil }
            }
            guard digits > 0, octet <= 255, !(digits > 1 && text[first] == UInt8(ascii: "0")) else { return nil }
            value = value << 8 | octet
            octets += 1
            if index == text.endIndex { return octets == 4 ? value : nil }
            guard octets < 4, text[index] == UInt8(ascii: ".") else { return nil }
            index += 1
        }
    }

    /// Eight 16-bit groups of 1-4 hex digits, one `::` standing for a run of zero groups, and
    /// an optional dotted-quad tail standing for the last two.
    static func parseIPv6(_ text: UnsafeRawBufferPointer) -> (high: UInt64, low: UInt64)? {
        guard !text.isEmpty, text.count <= maximumTextLength else { return nil }
        // The groups before `::` (head) and after it (tail), each shifted in as read.
        var head: UInt128 = 0
        var tail: UInt128 = 0
        var headCount = 0
        var tailCount = 0
        var compressed = false
        func push(_ word: UInt16) -> Bool {
            guard headCount + tailCount < 8 else { return false }
            if compressed {
                tail = tail << 16 | UInt128(word)
                tailCount += 1
            } else {
                head = head << 16 | UInt128(word)
                headCount += 1
            }
            return true
        }
        var index = 0
        if text.count >= 2 && text[0] == UInt8(ascii: ":") && text[1] == UInt8(ascii: ":") {
            compressed = true
            index = 2
        }
        while index < text.count {
            var end = index
            var isDottedQuad = false
            while end < text.count && text[end] != UInt8(ascii: ":") {
                if text[end] == UInt8(ascii: ".") { isDottedQuad = true }
                end += 1
            }
            if isDottedQuad {
                guard end == text.count, let v4 = parseIPv4(text[index..<end]),
                    push(UInt16(v4 >> 16)), push(UInt16(v4 & 0xffff))
                else { return nil }
                break
            }
            guard (1...4).contains(end - index) else { return nil }
            var word: UInt16 = 0
            for position in index..<end {
                guard let digit = hexDigit(text[position]) else { return nil }
                word = word << 4 | UInt16(digit)
            }
            guard push(word) else { return nil }
            if end == text.count { break }
            // `:` separates groups; `::` (once) marks the compressed run.
            if end + 1 < text.count && text[end + 1] == UInt8(ascii: ":") {
                guard !compressed else { return nil }
                compressed = true
                index = end + 2
            } else {
                guard end + 1 < text.count else { return nil }
                index = end + 1
            }
        }
        guard compressed ? headCount + tailCount <= 7 : headCount == 8 else { return nil }
        let address = headCount == 0 ? tail : head << UInt128(16 * (8 - headCount)) | tail
        return (UInt64(truncatingIfNeeded: address >> 64), UInt64(truncatingIfNeeded: address))
    }
}

private func decimalDigit(_ byte: UInt8) -> UInt8? {
    (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) ? byte - UInt8(ascii: "0") : nil
}

private func hexDigit(_ byte: UInt8) -> UInt8? {
    switch byte {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
    default: nil
    }
}

/// Appends `value` in decimal, without leading zeros.
public func appendDecimal(_ value: UInt16, to bytes: inout [UInt8]) {
    var divisor: UInt16 = 10000
    while divisor > 1 && value / divisor == 0 { divisor /= 10 }
    while divisor > 0 {
        bytes.append(UInt8(ascii: "0") + UInt8((value / divisor) % 10))
        divisor /= 10
    }
}

private func appendHex(_ value: UInt16, to bytes: inout [UInt8]) {
    let digits: StaticString = "0123456789abcdef"
    var shift = 12
    while shift > 0 && (value >> UInt16(shift)) == 0 { shift -= 4 }
    while shift >= 0 {
        bytes.append(digits.utf8Start[Int((value >> UInt16(shift)) & 0xf)])
        shift -= 4
    }
}
