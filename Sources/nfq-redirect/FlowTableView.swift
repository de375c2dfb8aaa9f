/// `nfq-redirect list` as a table with aligned columns, made from the daemon's text flow lines
/// (`tcp ESTABLISHED 431999s client=... orig=... to=... packets=5/4 bytes=320/250 [ASSURED]`,
/// docs/lookup-protocol.md).
enum FlowTableView {
    static let header = ["PROTO", "STATE", "EXPIRES", "CLIENT", "ORIGINAL", "REDIRECTED TO", "PACKETS", "BYTES", "FLAGS"]

    static func render(_ lines: [String]) -> [String] {
        let rows = [header] + lines.map(columns)
        let widths = header.indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
        return rows.map { row in
            row.indices.map { column in
                column == row.count - 1 ? row[column] : row[column].padding(to: widths[column])
            }.joined(separator: "  ").trimmingTrailingSpaces()
        }
    }

    /// One flow line split into the table's columns; unknown words go to FLAGS.
    private static func columns(_ line: String) -> [String] {
        let words = line.split(separator: " ").map(String.init)
        var row = Array(words.prefix(3)) + Array(repeating: "", count: max(0, 3 - words.count))
        var fields = ["client=": "", "orig=": "", "to=": "-", "packets=": "", "bytes=": ""]
        var flags: [String] = []
        for word in words.dropFirst(3) {
            if let key = fields.keys.first(where: { word.hasPrefix($0) }) {
                fields[key] = String(word.dropFirst(key.count))
            } else if word != "not-redirected" {
                flags.append(word)
            }
        }
        row += ["client=", "orig=", "to=", "packets=", "bytes="].map { fields[$0] ?? "" }
        row.append(flags.joined(separator: " "))
        return row
    }
}

extension String {
    fileprivate func padding(to width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }

    fileprivate func trimmingTrailingSpaces() -> String {
        var text = self
        while text.last == " " { text.removeLast() }
        return text
    }
}
