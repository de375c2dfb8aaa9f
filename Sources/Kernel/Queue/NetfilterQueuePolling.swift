/// How a datapath thread waits when its queue is empty (`[queue] busy_poll`).
public enum QueuePolling: Sendable, Equatable, CustomStringConvertible, ExpressibleByIntegerLiteral {
    /// Keep asking for this many microseconds after each batch, then sleep (0: sleep at once).
    case fixed(microseconds: Int)
    /// Keep asking only while batches arrive close together, briefly, within a CPU budget
    /// (`AdaptivePollPolicy`).
    case adaptive

    public static let off = QueuePolling.fixed(microseconds: 0)

    public init(integerLiteral value: Int) { self = .fixed(microseconds: value) }

    /// "adaptive", or a whole number of microseconds.
    public init?(parsing text: String) {
        if text == "adaptive" {
            self = .adaptive
        } else if let microseconds = Int(text) {
            self = .fixed(microseconds: microseconds)
        } else {
            return nil
        }
    }

    public var description: String {
        switch self {
        case .adaptive: "adaptive"
        case .fixed(let microseconds): "\(microseconds)"
        }
    }
}

/// When a thread whose queue is empty keeps asking (spins, yielding the CPU between tries)
/// instead of sleeping: the policy of `busy_poll = "adaptive"`.
///
/// A sleeping thread's wake-up, not its work, is most of a lone packet's delay (on a virtual
/// machine an idle vCPU halts, and waking it is a trip through the hypervisor); spinning keeps
/// the CPU awake for the next packet. This policy spins only where that pays and bounds what
/// it costs:
/// - it spins only after a batch that came within `closeGap` of the batch before it (packets
///   keep arriving close together); a batch after a quiet spell never starts a spin;
/// - one spin lasts at most `maximumSpin`; when it ends with nothing, the thread sleeps, so
///   polling stops within `maximumSpin` of the last packet;
/// - spinning draws on a budget that refills at `dutyPercent` of wall time and holds at most
///   `burst`: over any window of W the thread spins at most `dutyPercent` % of W plus `burst`.
///
/// Pure: the caller passes every instant (nanoseconds of one monotonic clock), so it is tested
/// without a clock; a value type of a few integers, nothing allocated.
public struct AdaptivePollPolicy: Sendable, Equatable {
    public struct Limits: Sendable, Equatable {
        public var closeGapNanoseconds: Int64
        public var maximumSpinNanoseconds: Int64
        /// Percent of wall time (1...100) the thread may spend spinning, over a long window.
        public var dutyPercent: Int64
        public var burstNanoseconds: Int64

        public init(closeGapNanoseconds: Int64, maximumSpinNanoseconds: Int64, dutyPercent: Int64, burstNanoseconds: Int64) {
            self.closeGapNanoseconds = closeGapNanoseconds
            self.maximumSpinNanoseconds = maximumSpinNanoseconds
            self.dutyPercent = min(max(dutyPercent, 0), 100)
            self.burstNanoseconds = max(burstNanoseconds, 0)
        }

        /// The daemon's: spin up to 50 µs after a batch that came within 1 ms of the one
        /// before, at most half of the thread's time (plus a 2 ms burst).
        public static let standard = Limits(
            closeGapNanoseconds: 1_000_000, maximumSpinNanoseconds: 50_000, dutyPercent: 50, burstNanoseconds: 2_000_000)
    }

    /// A spin shorter than this is not worth starting (one try and a yield take about 1 µs).
    static let shortestSpinNanoseconds: Int64 = 2_000

    public let limits: Limits
    /// Spinning time available now, in nanoseconds (0...burst).
    public private(set) var budgetNanoseconds: Int64
    private var refilledAt: Int64?
    private var lastArrival: Int64?
    /// The last batch came within `closeGap` of the one before it.
    public private(set) var arrivingCloseTogether = false

    public init(limits: Limits = .standard) {
        self.limits = limits
        budgetNanoseconds = limits.burstNanoseconds
    }

    /// A batch (one or more packets) arrived at `now`.
    public mutating func batchArrived(at now: Int64) {
        if let lastArrival {
            arrivingCloseTogether = now &- lastArrival <= limits.closeGapNanoseconds
        }
        lastArrival = now
    }

    /// The queue was empty at `now`, after a batch: the instant to spin until, or nil to sleep at once.
    public mutating func spinDeadline(at now: Int64) -> Int64? {
        refill(to: now)
        guard arrivingCloseTogether, let lastArrival, now &- lastArrival <= limits.closeGapNanoseconds else { return nil }
        let spin = min(limits.maximumSpinNanoseconds, budgetNanoseconds)
        guard spin >= Self.shortestSpinNanoseconds else { return nil }
        return now &+ spin
    }

    /// A spin that started at `start` (the instant given to `spinDeadline`) ended at `end`, a
    /// batch having arrived or the deadline having passed: charge it to the budget.
    public mutating func spun(from start: Int64, to end: Int64) {
        refill(to: end)
        budgetNanoseconds = max(0, budgetNanoseconds - max(0, end &- start))
    }

    private mutating func refill(to now: Int64) {
        guard let refilledAt else {
            refilledAt = now
            return
        }
        // Clamped first, so a long sleep cannot overflow the product.
        let elapsed = min(max(0, now &- refilledAt), limits.burstNanoseconds &* 100 &+ 1)
        budgetNanoseconds = min(limits.burstNanoseconds, budgetNanoseconds + elapsed * limits.dutyPercent / 100)
        self.refilledAt = max(refilledAt, now)
    }
}
