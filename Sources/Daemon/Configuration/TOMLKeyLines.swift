/// Finds the line each key of a TOML document is written on, so a validation error can name
/// it. TOMLKit parses values but does not report where they were; this scans only table
/// headers and `key =` starts, which is all an error message needs.
struct TOMLKeyLines {
    private var lines: [String: Int] = [:]

    init(_ text: String) {
        var table = ""
        var arrayCounts: [String: Int] = [:]
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.trimmingPrefix(while: { $0 == " " || $0 == "\t" })
            let number = index + 1
            if line.hasPrefix("[[") {
                let name = String(line.dropFirst(2).prefix { $0 != "]" }).trimmed
                let position = arrayCounts[name, default: 0]
                arrayCounts[name] = position + 1
                table = "\(name)[\(position)]"
                lines[table] = number
            } else if line.hasPrefix("[") {
                table = String(line.dropFirst().prefix { $0 != "]" }).trimmed
                lines[table] = number
            } else if let equals = line.firstIndex(of: "="), !line.hasPrefix("#") {
                let key = String(line[..<equals]).trimmed.replacingQuotes
                lines[table.isEmpty ? key : "\(table).\(key)"] = number
            }
        }
    }

    /// The line of `field` (`queue.count`, `redirect[1].ports`), else of its table.
    func line(of field: String) -> Int? {
        if let line = lines[field] { return line }
        guard let dot = field.lastIndex(of: ".") else { return nil }
        return line(of: String(field[..<dot]))
    }
}

extension String {
    fileprivate var trimmed: String {
        String(trimmingPrefix(while: \.isWhitespace).reversed().trimmingPrefix(while: \.isWhitespace).reversed())
    }

    fileprivate var replacingQuotes: String { filter { $0 != "\"" && $0 != "'" } }
}
