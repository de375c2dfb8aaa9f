import Logging
import RedirectCore

/// Per-packet problems logged at most once per interval, with a count of what was held back,
/// so a flood of bad packets reads as one line every few seconds in the journal.
final class RateLimitedLog: Sendable {
    private let logger: Logger
    private let interval: Int
    /// `last` is nil before the first line: `now - Int.min` used to overflow and trap there.
    private let state = Locked<(last: Int?, suppressed: Int)>((last: nil, suppressed: 0))

    init(logger: Logger, interval: Int) {
        self.logger = logger
        self.interval = interval
    }

    func warning(_ message: @autoclosure () -> String) {
        let now = monotonicSeconds()
        let suppressed: Int? = state.withLock { state in
            if let last = state.last, now - last < interval {
                state.suppressed += 1
                return nil
            }
            defer { state = (now, 0) }
            return state.suppressed
        }
        guard let suppressed else { return }
        logger.warning("\(message())\(suppressed > 0 ? " (\(suppressed) similar messages suppressed)" : "")")
    }
}
