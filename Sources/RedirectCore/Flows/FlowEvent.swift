/// A flow entering or leaving the table, for `nfq-redirect events`.
///
/// Delivery: each shard appends events to its own preallocated ring under the lock it already
/// holds (no allocation, no callback into foreign code while a lock is held); the daemon calls
/// `FlowTable.drainEvents()` periodically. A ring keeps the newest events: when the daemon falls
/// behind, the oldest are overwritten and counted in `FlowTableStatistics.eventsLost`. Events are
/// off (no memory, no cost) when `FlowTableConfiguration.eventCapacity` is 0.
public struct FlowEvent: Hashable, Sendable, CustomStringConvertible {
    public enum Kind: Hashable, Sendable {
        case created
        case destroyed(FlowEndReason)
    }

    public var kind: Kind
    /// When it happened, on the table's clock.
    public var time: UInt32
    /// The flow as it was at that moment.
    public var record: FlowRecord
    /// Order among events: per shard (a flow always lives in one shard, so one flow's events
    /// keep their order); across shards, events are ordered by time, then shard.
    var shard: Int
    var sequence: UInt64

    public var description: String {
        switch kind {
        case .created: "[NEW] \(record)"
        case .destroyed(let reason): "[DESTROY \(reason)] \(record)"
        }
    }
}
