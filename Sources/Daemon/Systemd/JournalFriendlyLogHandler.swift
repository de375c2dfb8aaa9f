import Glibc
import Logging

/// One line per event on stderr: `level: message key=value ...`. Under systemd (stderr is the
/// journal: $JOURNAL_STREAM is set) each line starts with the sd-daemon(3) `<N>` prefix, which
/// the journal maps to the entry's priority so `journalctl -p warning` finds the problems; the
/// journal stamps time and unit itself. On a terminal the program's name leads instead.
struct JournalFriendlyLogHandler: LogHandler {
    let label: String
    let toJournal: Bool
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    init(label: String, toJournal: Bool) {
        self.label = label
        self.toJournal = toJournal
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        let fields = merged.sorted { $0.key < $1.key }.map { " \($0.key)=\($0.value)" }.joined()
        let lead = toJournal ? "<\(Self.priority(event.level))>" : "\(label): "
        let line = "\(lead)\(event.level): \(event.message)\(fields)\n"
        fputs(line, stderr)
    }

    /// syslog priorities, as sd-daemon(3) prefixes.
    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }
}
