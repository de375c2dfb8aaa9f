/// A source of queued packets and the sink of their verdicts: the kernel's NFQUEUE
/// (`NetfilterQueue`) or, in tests, `InMemoryPacketQueue` (KernelTesting).
///
/// One thread drives a queue: `receive(into:timeoutMilliseconds:)` fills the batch, the
/// engine decides each packet's verdict (rewriting payloads in place), and
/// `sendVerdicts(for:)` answers for the whole batch before the next receive. Every packet
/// of a batch gets a verdict when the batch is sent (`.accept` unless the engine set
/// another), because the real queue answers unmodified accepts with one NFQNL_MSG_VERDICT_BATCH.
/// `counters` and `interrupt()` may be used from any thread.
public protocol PacketQueue: AnyObject {
    /// The queue number this instance is bound to.
    var queueNumber: UInt16 { get }

    /// A batch sized for this queue, allocated once and reused for every receive.
    func makeBatch() -> PacketBatch

    /// Blocks until packets arrive (then takes every one that is ready, up to the batch's
    /// capacity), `interrupt()` is called, or `timeoutMilliseconds` pass (-1: no limit).
    /// The batch is emptied first. A `.received` batch may hold no packets when what
    /// arrived was only netlink errors or unparsable messages (they are counted).
    func receive(into batch: PacketBatch, timeoutMilliseconds: Int32) throws(KernelError) -> ReceiveResult

    /// Sends every packet's verdict in the batch (and the fallback verdicts for messages that
    /// could not be parsed), then empties the batch.
    func sendVerdicts(for batch: PacketBatch) throws(KernelError)

    /// Wakes a thread blocked in `receive`, which then returns `.interrupted`.
    func interrupt()

    /// Totals since the queue was created.
    var counters: PacketQueueCounters { get }
}

/// How a receive ended.
public enum ReceiveResult: Sendable, Equatable {
    case received
    case timedOut
    case interrupted
}

/// The verdict for a packet whose message could not be parsed but whose id is known.
public enum UnparsablePacketPolicy: Sendable {
    case accept
    case drop
}
