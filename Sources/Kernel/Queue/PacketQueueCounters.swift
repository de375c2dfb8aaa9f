import RedirectCore
import Synchronization

/// Totals of one packet queue, for metrics.
public struct PacketQueueCounters: Sendable, Equatable {
    /// Packets received and handed to the engine.
    public var received: UInt64 = 0
    /// Receives that returned at least one packet (received / batches = mean batch size).
    public var batches: UInt64 = 0
    public var acceptedUnmodified: UInt64 = 0
    public var acceptedModified: UInt64 = 0
    public var dropped: UInt64 = 0
    /// Accepts carrying a new mark (kernel-nat mode).
    public var acceptedMarked: UInt64 = 0
    /// ENOBUFS on receive: the kernel lost messages because the socket buffer was full.
    public var noBufferSpace: UInt64 = 0
    /// NLMSG_ERROR messages with a non-zero error (usually a rejected verdict).
    public var netlinkErrors: UInt64 = 0
    /// Messages that could not be parsed (truncated, malformed, unexpected type, no room).
    public var parseErrors: UInt64 = 0
    /// sendmsg failures of verdicts (the packets stay queued in the kernel).
    public var sendErrors: UInt64 = 0
    /// `.acceptModified` verdicts on truncated packets, sent as drops instead (a payload
    /// verdict would have cut the packet to the copied length).
    public var rejectedRewrites: UInt64 = 0
    /// NFQNL_MSG_VERDICT_BATCH messages sent (each answered several unmodified accepts).
    public var batchVerdictMessages: UInt64 = 0

    public init() {}
}

/// The atomic home of a queue's counters: the queue thread adds a batch's totals once per
/// batch, and any thread reads a snapshot.
final class PacketQueueCounterCells: Sendable {
    private let received = Atomic<UInt64>(0)
    private let batches = Atomic<UInt64>(0)
    private let acceptedUnmodified = Atomic<UInt64>(0)
    private let acceptedModified = Atomic<UInt64>(0)
    private let dropped = Atomic<UInt64>(0)
    private let acceptedMarked = Atomic<UInt64>(0)
    private let noBufferSpace = Atomic<UInt64>(0)
    private let netlinkErrors = Atomic<UInt64>(0)
    private let parseErrors = Atomic<UInt64>(0)
    private let sendErrors = Atomic<UInt64>(0)
    private let rejectedRewrites = Atomic<UInt64>(0)
    private let batchVerdictMessages = Atomic<UInt64>(0)

    func add(_ delta: PacketQueueCounters) {
        func add(_ cell: borrowing Atomic<UInt64>, _ value: UInt64) {
            if value != 0 { cell.wrappingAdd(value, ordering: .relaxed) }
        }
        add(received, delta.received)
        add(batches, delta.batches)
        add(acceptedUnmodified, delta.acceptedUnmodified)
        add(acceptedModified, delta.acceptedModified)
        add(dropped, delta.dropped)
        add(acceptedMarked, delta.acceptedMarked)
        add(noBufferSpace, delta.noBufferSpace)
        add(netlinkErrors, delta.netlinkErrors)
        add(parseErrors, delta.parseErrors)
        add(sendErrors, delta.sendErrors)
        add(rejectedRewrites, delta.rejectedRewrites)
        add(batchVerdictMessages, delta.batchVerdictMessages)
    }

    var snapshot: PacketQueueCounters {
        var counters = PacketQueueCounters()
        counters.received = received.load(ordering: .relaxed)
        counters.batches = batches.load(ordering: .relaxed)
        counters.acceptedUnmodified = acceptedUnmodified.load(ordering: .relaxed)
        counters.acceptedModified = acceptedModified.load(ordering: .relaxed)
        counters.dropped = dropped.load(ordering: .relaxed)
        counters.acceptedMarked = acceptedMarked.load(ordering: .relaxed)
        counters.noBufferSpace = noBufferSpace.load(ordering: .relaxed)
        counters.netlinkErrors = netlinkErrors.load(ordering: .relaxed)
        counters.parseErrors = parseErrors.load(ordering: .relaxed)
        counters.sendErrors = sendErrors.load(ordering: .relaxed)
        counters.rejectedRewrites = rejectedRewrites.load(ordering: .relaxed)
        counters.batchVerdictMessages = batchVerdictMessages.load(ordering: .relaxed)
        return counters
    }
}
