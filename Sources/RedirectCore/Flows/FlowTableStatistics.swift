/// Counters and gauges of a `FlowTable`. Counters only grow (wrapping at 2^64).
public struct FlowTableStatistics: Hashable, Sendable {
    /// Flows created by packets.
    public var created: UInt64 = 0
    /// Flows re-inserted by `restore`.
    public var restored: UInt64 = 0
    /// Flows destroyed, by reason.
    public var destroyedExpired: UInt64 = 0
    public var destroyedClosed: UInt64 = 0
    public var destroyedEvicted: UInt64 = 0
    public var destroyedReplaced: UInt64 = 0
    /// New flows refused because the table was full and nothing could be evicted.
    public var refusedTableFull: UInt64 = 0
    /// New flows refused because their reply tuple belonged to another live flow.
    public var refusedTupleInUse: UInt64 = 0
    /// Original-direction packets of unknown flows that may not start one (TCP other than a lone SYN).
    public var untrackedOriginal: UInt64 = 0
    /// Reply-direction packets that match no flow.
    public var untrackedReply: UInt64 = 0
    /// Packets that could start a flow but the policy said `.ignore`.
    public var ignoredByPolicy: UInt64 = 0
    /// Packets of known TCP flows that the state machine rejected (invalid flags, or not valid in
    /// the flow's state). They are still rewritten, but change nothing.
    public var invalid: UInt64 = 0
    /// Client resets far from the client's sequence numbers (forged): ignored, still rewritten.
    public var blindResets: UInt64 = 0
    /// Events overwritten before they were drained.
    public var eventsLost: UInt64 = 0
    /// Flows in the table now (including expired ones not yet swept).
    public var count: Int = 0
    public var limit: Int = 0
    /// Flows in the table now, by state.
    public var byState: [FlowState: Int] = [:]

    public init() {}

    public func destroyed(_ reason: FlowEndReason) -> UInt64 {
        switch reason {
        case .expired: destroyedExpired
        case .closed: destroyedClosed
        case .evicted: destroyedEvicted
        case .replaced: destroyedReplaced
        }
    }
}
