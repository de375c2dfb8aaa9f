/// Refuses a table header whose name does not start with a bare-key character (A-Z a-z 0-9 - _)
/// or a quote before the text reaches toml++: its parser asserts, aborting the daemon (on a
/// reload: killing it), on `[é]` or `[;x]`, where a key line with the same character gets a
/// clean error. Found by Fuzz/Sources/FuzzConfiguration; fixtures in ConfigurationFileTests.
///
/// A header is a `[` first on a line outside any string, array or inline table, so the scan
/// follows strings (basic, literal, multi-line), comments and bracket depth.
enum TOMLTableHeaderCheck {
    static func check(_ text: String, path: String) throws(ConfigurationError) {
        var scanner = Scanner()
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let bytes = Array(line.utf8)
            if scanner.atTopLevel, let first = headerNameStart(bytes), !startsKey(first) {
                throw ConfigurationError(
                    location: "\(path):\(index + 1)", field: "",
                    problem: "a table name must start with a letter, digit, '-', '_' or a quote")
            }
            scanner.scan(bytes)
        }
    }

    /// The first byte of the name when the line is a table header (`[` or `[[` first), else nil.
    private static func headerNameStart(_ bytes: [UInt8]) -> UInt8?? {
        var index = bytes.firstIndex { !isBlank($0) } ?? bytes.count
        guard index < bytes.count, bytes[index] == UInt8(ascii: "[") else { return nil }
        while index < bytes.count && (bytes[index] == UInt8(ascii: "[") || isBlank(bytes[index])) { index += 1 }
        return .some(index < bytes.count ? bytes[index] : nil)
    }

    private static func startsKey(_ byte: UInt8?) -> Bool {
        guard let byte else { return false }
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"),
            UInt8(ascii: "\""), UInt8(ascii: "'"):
            return true
        default:
            return false
        }
    }

    private static func isBlank(_ byte: UInt8) -> Bool { byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") }

    /// Where the text stands between lines: inside a multi-line string, or brackets deep.
    private struct Scanner {
        var multilineDelimiter: UInt8?
        var depth = 0

        var atTopLevel: Bool { multilineDelimiter == nil && depth == 0 }

        mutating func scan(_ bytes: [UInt8]) {
            var index = 0
            func tripled(_ quote: UInt8) -> Bool {
                index + 2 < bytes.count && bytes[index] == quote && bytes[index + 1] == quote && bytes[index + 2] == quote
            }
            while index < bytes.count {
                let byte = bytes[index]
                if let quote = multilineDelimiter {
                    if quote == UInt8(ascii: "\"") && byte == UInt8(ascii: "\\") {
                        index += 2
                        continue
                    }
                    if tripled(quote) {
                        multilineDelimiter = nil
                        index += 3
                        continue
                    }
                    index += 1
                    continue
                }
                switch byte {
                case UInt8(ascii: "#"):
                    return
                case UInt8(ascii: "\""), UInt8(ascii: "'"):
                    if tripled(byte) {
                        multilineDelimiter = byte
                        index += 3
                        continue
                    }
                    // A one-line string: to its closing quote (basic strings have escapes).
                    index += 1
                    while index < bytes.count && bytes[index] != byte {
                        index += (byte == UInt8(ascii: "\"") && bytes[index] == UInt8(ascii: "\\")) ? 2 : 1
                    }
                case UInt8(ascii: "["), UInt8(ascii: "{"):
                    depth += 1
                case UInt8(ascii: "]"), UInt8(ascii: "}"):
                    depth = max(0, depth - 1)
                default:
                    break
                }
                index += 1
            }
        }
    }
}
