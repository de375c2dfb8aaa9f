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
    /// Kernel-nat mode's marks: only a flow's first packet is queued (mangle, after conntrack)
    /// and the kernel's NAT carries the flow. Nil: the userspace mode.
    public var kernelNAT: KernelNATMarks?

    public init(
        rules: [RedirectRule], firstQueue: UInt16 = 0, queueCount: UInt16 = 1, failOpen: Bool = false,
        excludedMarks: [FirewallMark] = [], excludedUserIDs: [UInt32] = [], kernelNAT: KernelNATMarks? = nil
    ) {
        self.rules = rules
        self.firstQueue = firstQueue
        self.queueCount = queueCount
        self.failOpen = failOpen
        self.excludedMarks = excludedMarks
        self.excludedUserIDs = excludedUserIDs
        self.kernelNAT = kernelNAT
    }

    /// The daemon's chains in this configuration's mode.
    public var chains: [ChainJump] { kernelNAT == nil ? ChainJump.userspace : ChainJump.kernelNAT }

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
    /// Kernel-nat mode: first packets (ctstate NEW) are queued in mangle, after conntrack...
    public static let newPreRouting = ChainJump(table: "mangle", builtinChain: "PREROUTING", chain: "NFQR-NEW-PREROUTING")
    public static let newOutput = ChainJump(table: "mangle", builtinChain: "OUTPUT", chain: "NFQR-NEW-OUTPUT")
    /// ...and the nat table's REDIRECT acts on the mark the daemon's verdict set.
    public static let natPreRouting = ChainJump(table: "nat", builtinChain: "PREROUTING", chain: "NFQR-NAT-PREROUTING")
    public static let natOutput = ChainJump(table: "nat", builtinChain: "OUTPUT", chain: "NFQR-NAT-OUTPUT")

    /// ...and, before conntrack, the events a redirected TCP connection's entry reports are
    /// limited to the ones the daemon reads (`-j CT --ctevents`).
    public static let eventsPreRouting = ChainJump(table: "raw", builtinChain: "PREROUTING", chain: "NFQR-EV-PREROUTING")
    public static let eventsOutput = ChainJump(table: "raw", builtinChain: "OUTPUT", chain: "NFQR-EV-OUTPUT")

    public static let userspace = [preRouting, output, reply]
    public static let kernelNAT = [eventsPreRouting, eventsOutput, newPreRouting, newOutput, natPreRouting, natOutput]
    /// Every chain of either mode: what a stop for good removes.
    public static let all = userspace + kernelNAT
    /// The tables the daemon's chains live in.
    public static let tables = ["raw", "mangle", "nat"]
}
