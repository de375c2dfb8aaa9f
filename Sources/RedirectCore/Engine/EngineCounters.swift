/// What one datapath thread did, counted without contention: each thread owns its engine and
/// counters, and the metrics exporter sums them.
public final class EngineCounters: Sendable {
    public let packets = AtomicCounter()
    public let bytes = AtomicCounter()
    public let accepted = AtomicCounter()
    public let rewrittenOriginal = AtomicCounter()
    public let rewrittenReply = AtomicCounter()
    /// Kernel-nat mode: first packets of redirected flows, accepted with the mark that hands
    /// the flow to the kernel's NAT.
    public let markedOriginal = AtomicCounter()
    public let dropped = AtomicCounter()
    /// Packets the table does not track: not ours by policy, or of no known flow and unable to
    /// start one (TCP without SYN, a stray reply).
    public let untracked = AtomicCounter()
    /// Packets dropped because the table was full and nothing could be evicted.
    public let refusedTableFull = AtomicCounter()
    /// Packets dropped because another flow owns the reply tuple theirs would get.
    public let refusedTupleInUse = AtomicCounter()
    /// Redirects dropped because the incoming interface had no usable address.
    public let noRedirectAddress = AtomicCounter()
    /// ICMP errors about a redirected flow, translated (related traffic, either direction).
    public let relatedTranslated = AtomicCounter()
    /// ICMP errors about a flow tracked but not redirected: passed unchanged.
    public let relatedNotRedirected = AtomicCounter()
    /// Well-formed ICMP errors quoting no flow (or one in the other direction): passed unchanged.
    public let relatedUnmatched = AtomicCounter()
    /// Packets not parsed, by reason (indexed like `PacketError.allCases`).
    public let packetErrors: [AtomicCounter] = PacketError.allCases.map { _ in AtomicCounter() }

    public init() {}

    /// The drop counter of one refusal reason.
    public func refused(_ refusal: FlowRefusal) -> AtomicCounter {
        switch refusal {
        case .tableFull: refusedTableFull
        case .tupleInUse: refusedTupleInUse
        case .noRedirectAddress: noRedirectAddress
        }
    }

    public func count(_ error: PacketError) {
        packetErrors[error.counterIndex].add(1)
    }
}

extension PacketError {
    /// Position in `allCases`, for counter arrays.
    public var counterIndex: Int {
        // allCases is small (< 32) and fixed; a linear scan over a static array beats a
        // dictionary and allocates nothing.
        Self.indexTable.firstIndex(of: self) ?? 0
    }

    static let indexTable: [PacketError] = allCases.map { $0 }
}
