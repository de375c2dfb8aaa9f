import Synchronization

/// The table-wide flow count and its hard limit, shared by all shards.
///
/// Each shard's slab has some slack above its even share of the limit (hashing never spreads
/// flows perfectly), so the limit itself is enforced here: a flow is admitted only after
/// reserving a unit of the limit, and returns it when destroyed.
final class FlowOccupancy: Sendable {
    let limit: Int
    private let live = Atomic<Int>(0)

    init(limit: Int) {
        self.limit = limit
    }

    var count: Int { live.load(ordering: .relaxed) }

    /// Takes one unit of the limit; false when the table is full.
    func reserve() -> Bool {
        var current = live.load(ordering: .relaxed)
        while current < limit {
            let (exchanged, original) = live.compareExchange(
                expected: current, desired: current + 1, ordering: .relaxed)
            if exchanged { return true }
            current = original
        }
        return false
    }

    func release() {
        live.wrappingSubtract(1, ordering: .relaxed)
    }
}
