import RedirectCore

/// A firewall mark (with mask) whose packets are never redirected, e.g. one a proxy sets
/// with SO_MARK on its upstream sockets.
public struct FirewallMark: Hashable, Sendable {
    public var value: UInt32
    public var mask: UInt32

    public init(value: UInt32, mask: UInt32 = 0xffff_ffff) {
        self.value = value
        self.mask = mask
    }
}

/// Everything the firewall rules are generated from.
///
/// Queue numbers: original-direction packets go to `firstQueue ..< firstQueue + queueCount`,
/// replies from the proxy to the `queueCount` queues after those.
public struct RuleSetConfiguration: Hashable, Sendable {
    public var rules: [RedirectRule]
    public var firstQueue: UInt16
    public var queueCount: UInt16
    /// `--queue-bypass` on the original direction: with no daemon bound, packets pass
    /// unredirected instead of being dropped. Replies never bypass: a reply the daemon
    /// cannot rewrite would reach the client from the proxy's address and reset the flow,
    /// while a dropped one is retransmitted and survives a daemon restart.
    public var failOpen: Bool
    /// Packets with these marks are never queued.
    public var excludedMarks: [FirewallMark]
    /// Packets from sockets of these users (a local proxy's own upstream connections) are
    /// never queued; the owner match exists only on OUTPUT.
    public var excludedUserIDs: [UInt32]

    public init(
        rules: [RedirectRule], firstQueue: UInt16 = 0, queueCount: UInt16 = 1, failOpen: Bool = false,
        excludedMarks: [FirewallMark] = [], excludedUserIDs: [UInt32] = []
    ) {
        self.rules = rules
        self.firstQueue = firstQueue
        self.queueCount = queueCount
        self.failOpen = failOpen
        self.excludedMarks = excludedMarks
        self.excludedUserIDs = excludedUserIDs
    }

    public var originalQueues: ClosedRange<UInt16> { firstQueue...(firstQueue &+ queueCount &- 1) }
    public var replyQueues: ClosedRange<UInt16> { (firstQueue &+ queueCount)...(firstQueue &+ 2 &* queueCount &- 1) }

    public func validate() throws(KernelError) {
        guard queueCount >= 1 else { throw .invalidConfiguration("the queue count must be at least 1") }
        guard Int(firstQueue) + 2 * Int(queueCount) - 1 <= Int(UInt16.max) else {
            throw .invalidConfiguration(
                "queues \(firstQueue)-\(Int(firstQueue) + 2 * Int(queueCount) - 1) do not fit: queue numbers end at 65535")
        }
    }
}

/// Names of the daemon's own chains, and where they are jumped to from.
public struct ChainJump: Hashable, Sendable {
    public var table: String
    public var builtinChain: String
    public var chain: String

    public static let preRouting = ChainJump(table: "raw", builtinChain: "PREROUTING", chain: "NFQR-PREROUTING")
    public static let output = ChainJump(table: "raw", builtinChain: "OUTPUT", chain: "NFQR-OUTPUT")
    public static let reply = ChainJump(table: "mangle", builtinChain: "OUTPUT", chain: "NFQR-REPLY")
    public static let all = [preRouting, output, reply]
}
