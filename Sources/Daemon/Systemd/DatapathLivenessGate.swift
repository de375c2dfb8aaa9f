/// Tells a hung datapath thread from an idle one. Every thread bumps its progress counter
/// after each receive, and an idle receive times out several times a second; so a thread
/// whose counter did not move between two housekeeping ticks is stuck inside a batch, and the
/// systemd watchdog must not be told that all is well.
struct DatapathLivenessGate {
    private var last: [UInt64]

    init(progress: [UInt64]) { last = progress }

    /// Indexes of the threads that made no progress since the previous call.
    mutating func stuckThreads(progress: [UInt64]) -> [Int] {
        defer { last = progress }
        return zip(progress, last).enumerated().compactMap { index, pair in pair.0 == pair.1 ? index : nil }
    }
}
