import Glibc

/// Wall-clock times for flow events and statistics: RFC 3339, UTC, microseconds
/// (`2026-12-06T15:28:08.123456Z`).
///
/// Flow events carry the table's own clock (whole seconds of CLOCK_MONOTONIC); the lookup
/// service collects them every 100 ms and gives each a wall-clock time then: the moment of
/// collection, moved back to the end of the event's own second when the event is older than
/// that second. An event's `timestamp` is therefore at most one collection interval (about
/// 100 ms) after the moment it happened.
enum WallClock {
    /// Nanoseconds since the Unix epoch (CLOCK_REALTIME) and on CLOCK_MONOTONIC, read together.
    struct Reading: Sendable {
        var realtimeNanoseconds: Int64
        var monotonicNanoseconds: Int64

        static func now() -> Reading {
            var monotonic = timespec()
            var realtime = timespec()
            clock_gettime(CLOCK_MONOTONIC, &monotonic)
            clock_gettime(CLOCK_REALTIME, &realtime)
            return Reading(
                realtimeNanoseconds: Int64(realtime.tv_sec) * 1_000_000_000 + Int64(realtime.tv_nsec),
                monotonicNanoseconds: Int64(monotonic.tv_sec) * 1_000_000_000 + Int64(monotonic.tv_nsec))
        }
    }

    /// The wall-clock time (nanoseconds since the epoch) of something that happened at
    /// `monotonicSecond` (whole seconds of CLOCK_MONOTONIC, as the flow table counts) and was
    /// collected at `reading`: the collection time, or the last nanosecond of that second
    /// when the second ended before the collection.
    static func estimate(monotonicSecond: UInt32, collectedAt reading: Reading) -> Int64 {
        let endOfSecond = (Int64(monotonicSecond) + 1) * 1_000_000_000 - 1
        let happened = min(reading.monotonicNanoseconds, endOfSecond)
        return reading.realtimeNanoseconds - (reading.monotonicNanoseconds - happened)
    }

    /// RFC 3339 in UTC with six fractional digits.
    static func rfc3339(nanosecondsSinceEpoch nanoseconds: Int64) -> String {
        var seconds = time_t(nanoseconds >= 0 ? nanoseconds / 1_000_000_000 : (nanoseconds - 999_999_999) / 1_000_000_000)
        let micros = Int((nanoseconds - Int64(seconds) * 1_000_000_000) / 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func digits(_ value: Int, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        return digits(Int(parts.tm_year) + 1900, 4) + "-" + digits(Int(parts.tm_mon) + 1, 2) + "-" + digits(Int(parts.tm_mday), 2)
            + "T" + digits(Int(parts.tm_hour), 2) + ":" + digits(Int(parts.tm_min), 2) + ":" + digits(Int(parts.tm_sec), 2)
            + "." + digits(micros, 6) + "Z"
    }
}
