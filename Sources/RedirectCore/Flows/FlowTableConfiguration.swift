/// Sizing and behaviour of a `FlowTable`; everything is allocated from it at init.
public struct FlowTableConfiguration: Hashable, Sendable {
    /// Hard limit on tracked flows (the kernel's `nf_conntrack_max`).
    public var limit: Int
    /// Requested number of independently locked shards. Fewer are used for small limits, so
    /// that each shard's even share is at least `minimumShardShare` flows (see `FlowTable.shardCount`).
    public var shardCount: Int
    public var timeouts: FlowTimeouts
    /// Key of the table's hash; nil draws a random one (the normal case: tests pass a fixed seed).
    public var seed: UInt64?
    /// Slots examined, from a rotating cursor, to find a flow to drop early when the table is full.
    public var evictionScanLimit: Int
    /// How many recently ended flows are remembered for "expired" lookup answers (in total).
    public var tombstoneCapacity: Int
    /// How many undrained events are kept (in total); 0 turns events off.
    public var eventCapacity: Int

    public static let minimumShardShare = 256

    public init(
        limit: Int = 262_144, shardCount: Int = 64, timeouts: FlowTimeouts = FlowTimeouts(),
        seed: UInt64? = nil, evictionScanLimit: Int = 32, tombstoneCapacity: Int = 4096, eventCapacity: Int = 0
    ) {
        self.limit = limit
        self.shardCount = shardCount
        self.timeouts = timeouts
        self.seed = seed
        self.evictionScanLimit = evictionScanLimit
        self.tombstoneCapacity = tombstoneCapacity
        self.eventCapacity = eventCapacity
    }

    /// Throws the first setting that is out of range.
    public func validate() throws(FlowTableConfigurationError) {
        if !(1...Self.maximumLimit).contains(limit) {
            throw .outOfRange(setting: "limit", value: limit, allowed: 1...Self.maximumLimit)
        }
        if !(1...4096).contains(shardCount) {
            throw .outOfRange(setting: "shardCount", value: shardCount, allowed: 1...4096)
        }
        if !(1...65536).contains(evictionScanLimit) {
            throw .outOfRange(setting: "evictionScanLimit", value: evictionScanLimit, allowed: 1...65536)
        }
        if !(0...(1 << 20)).contains(tombstoneCapacity) {
            throw .outOfRange(setting: "tombstoneCapacity", value: tombstoneCapacity, allowed: 0...(1 << 20))
        }
        if !(0...(1 << 22)).contains(eventCapacity) {
            throw .outOfRange(setting: "eventCapacity", value: eventCapacity, allowed: 0...(1 << 22))
        }
        for state in FlowState.allCases where timeouts[state] == 0 {
            throw .zeroTimeout(state)
        }
    }

    /// Slot numbers are 32-bit and the index keeps headroom above the slab.
    public static let maximumLimit = 1 << 30
}

public enum FlowTableConfigurationError: Error, Hashable, Sendable, CustomStringConvertible {
    case outOfRange(setting: String, value: Int, allowed: ClosedRange<Int>)
    case zeroTimeout(FlowState)

    public var description: String {
        switch self {
        case .outOfRange(let setting, let value, let allowed):
            "flow table \(setting) \(value) is out of range \(allowed.lowerBound)...\(allowed.upperBound)"
        case .zeroTimeout(let state):
            "flow table timeout for \(state) must be at least 1 second"
        }
    }
}
