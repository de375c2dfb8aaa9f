import RedirectCore

/// How flows and flow events read in `LIST`, `EVENTS` and the CLI: one line each, as
/// `key=value` text (like conntrack -L) or as a JSON object.
enum FlowFormatting {
    static func line(for record: FlowRecord, now: UInt32, format: LookupRequest.OutputFormat) -> String {
        switch format {
        case .text: text(record, now: now)
        case .json: "{" + jsonFields(record, now: now) + "}"
        }
    }

    /// An event as `EVENTS` sends it. `timestamp` is its wall-clock time (see `WallClock`):
    /// text lines start with it in RFC 3339; JSON carries it as `"timestamp"` beside `"time"`,
    /// the table's own clock (whole seconds of CLOCK_MONOTONIC).
    static func line(for event: FlowEvent, timestamp: Int64, format: LookupRequest.OutputFormat) -> String {
        let (kind, reason): (String, String?) =
            switch event.kind {
            case .created: ("new", nil)
            case .destroyed(let why): ("destroy", why.description)
            }
        let wallClock = WallClock.rfc3339(nanosecondsSinceEpoch: timestamp)
        switch format {
        case .text:
            return "\(wallClock) [\(kind.uppercased())\(reason.map { " \($0)" } ?? "")] \(text(event.record, now: event.time))"
        case .json:
            let reasonField = reason.map { ",\"reason\":\"\($0)\"" } ?? ""
            return "{\"event\":\"\(kind)\"\(reasonField),\"timestamp\":\"\(wallClock)\",\"time\":\(event.time),"
                + jsonFields(event.record, now: event.time) + "}"
        }
    }

    private static func text(_ record: FlowRecord, now: UInt32) -> String {
        var fields = [
            "\(record.proto)", "\(record.state)", "\(record.remaining(now: now))s",
            "client=\(record.client)", "orig=\(record.originalDestination)",
        ]
        if let target = record.redirectTarget { fields.append("to=\(target)") } else { fields.append("not-redirected") }
        fields.append("packets=\(record.originalPackets)/\(record.replyPackets)")
        fields.append("bytes=\(record.originalBytes)/\(record.replyBytes)")
        if record.assured { fields.append("[ASSURED]") }
        if !record.seenReply { fields.append("[UNREPLIED]") }
        return fields.joined(separator: " ")
    }

    private static func jsonFields(_ record: FlowRecord, now: UInt32) -> String {
        let target = record.redirectTarget.map { "{\"ip\":\"\($0.address)\",\"port\":\($0.port)}" } ?? "null"
        return "\"proto\":\"\(record.proto)\",\"state\":\"\(record.state)\",\"expires_in\":\(record.remaining(now: now)),"
            + "\"client\":{\"ip\":\"\(record.client.address)\",\"port\":\(record.client.port)},"
            + "\"original\":{\"ip\":\"\(record.originalDestination.address)\",\"port\":\(record.originalDestination.port)},"
            + "\"redirect\":\(target),\"assured\":\(record.assured),\"replied\":\(record.seenReply),"
            + "\"packets\":{\"original\":\(record.originalPackets),\"reply\":\(record.replyPackets)},"
            + "\"bytes\":{\"original\":\(record.originalBytes),\"reply\":\(record.replyBytes)}"
    }
}
