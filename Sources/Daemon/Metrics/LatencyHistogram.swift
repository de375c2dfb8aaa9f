import RedirectCore

/// A latency histogram with fixed buckets, recorded from hot paths: one relaxed atomic add
/// per bucket hit and two for the sum and count, nothing allocated. Rendered as a
/// Prometheus histogram (`_bucket{le=...}`, `_sum`, `_count`).
final class LatencyHistogram: Sendable {
    /// Upper bounds in nanoseconds: 1 µs to 1 s, roughly 1-2.5-5 per decade.
    static let boundsNanoseconds: [UInt64] = [
        1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
        1_000_000, 2_500_000, 5_000_000, 10_000_000, 25_000_000, 50_000_000, 100_000_000,
        250_000_000, 500_000_000, 1_000_000_000,
    ]

    /// One per bound, plus one for everything above the last (+Inf).
    private let buckets: [AtomicCounter] = (0...LatencyHistogram.boundsNanoseconds.count).map { _ in AtomicCounter() }
    private let sumNanoseconds = AtomicCounter()
    private let total = AtomicCounter()

    func record(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        let nanoseconds = seconds < 0 ? 0 : UInt64(seconds) &* 1_000_000_000 &+ UInt64(attoseconds / 1_000_000_000)
        record(nanoseconds: nanoseconds)
    }

    func record(nanoseconds: UInt64) {
        var index = 0
        let bounds = Self.boundsNanoseconds
        while index < bounds.count && nanoseconds > bounds[index] { index += 1 }
        buckets[index].add(1)
        sumNanoseconds.add(nanoseconds)
        total.add(1)
    }

    /// What is recorded now: per-bucket (not cumulative) counts, the sum and the count.
    var snapshot: Snapshot {
        Snapshot(counts: buckets.map(\.load), sumNanoseconds: sumNanoseconds.load, count: total.load)
    }

    struct Snapshot: Sendable {
        var counts: [UInt64]
        var sumNanoseconds: UInt64
        var count: UInt64

        static let empty = Snapshot(counts: [UInt64](repeating: 0, count: LatencyHistogram.boundsNanoseconds.count + 1), sumNanoseconds: 0, count: 0)

        static func + (left: Snapshot, right: Snapshot) -> Snapshot {
            Snapshot(
                counts: zip(left.counts, right.counts).map { $0 + $1 },
                sumNanoseconds: left.sumNanoseconds + right.sumNanoseconds, count: left.count + right.count)
        }
    }
}
