import Synchronization

/// The daemon's connection-tracking table: the userspace twin of the kernel's `nf_conntrack`
/// for the flows it redirects.
///
/// Every flow is indexed twice, by its ORIGINAL tuple (client -> original destination, the way
/// the client's packets arrive) and by its REPLY tuple (redirect target -> client, the way the
/// proxy's answers leave), like the kernel's `tuplehash[IP_CT_DIR_ORIGINAL]` and `[REPLY]`.
///
/// Concurrency: the table is split into shards, each behind its own `Mutex`, chosen by a keyed
/// hash of (protocol, client endpoint). Both tuples contain the client endpoint, so a packet of
/// either direction and a proxy's lookup each take exactly one shard lock.
///
/// Memory: everything is allocated at init from `configuration.limit` (a slab of 96-byte flow
/// records and two open-addressing indexes per shard): the packet path never allocates and
/// never rehashes. About 123 bytes per flow at the limit; see `storageBytes`.
///
/// Time: `now` is whole seconds of a monotonic clock supplied by the caller (CLOCK_MONOTONIC in
/// the daemon), so tests drive time and saved flows stay valid across a daemon restart.
/// Expiry is lazy (an expired flow met by a packet or lookup is removed) plus `sweep`.
public final class FlowTable: Sendable {
    public let configuration: FlowTableConfiguration
    /// Shards in use: the requested count, reduced so each gets at least
    /// `FlowTableConfiguration.minimumShardShare` flows of the limit.
    public let shardCount: Int
    private let shards: LockedShards
    private let hasher: FlowHasher
    private let occupancy: FlowOccupancy
    private let sweepCursor = Locked(SweepCursor())
    /// The mapping the slabs live in when the table is kept in a live table file.
    public let sharedFile: SharedFlowFile?

    private struct SweepCursor {
        var shard = 0
        var slot: UInt32 = 0
    }

    /// Shards and slots per shard for `configuration` (which must be valid).
    public static func shardLayout(for configuration: FlowTableConfiguration) -> (shards: Int, slabCapacity: Int) {
        let limit = configuration.limit
        let shardCount = max(1, min(configuration.shardCount, limit / FlowTableConfiguration.minimumShardShare))
        // A shard's slab holds its even share plus six standard deviations of the binomial spread
        // of a keyed hash, so no shard fills up before the table does (the chance is about 1e-9
        // per shard); the limit itself is enforced table-wide by `occupancy`.
        let share = Double(limit) / Double(shardCount)
        let slack = 6 * share.squareRoot() + 8
        let slabCapacity = shardCount == 1 ? limit : min(limit, Int((share + slack).rounded(.up)))
        return (shardCount, slabCapacity)
    }

    /// `observer` hears of every redirected flow that starts or ends (see `RedirectedFlowObserver`).
    /// `sharedFile` (made by `SharedFlowFile.create` for this configuration, zero-filled) holds
    /// the slabs instead of private memory, so the flows outlive the process.
    public init(
        configuration: FlowTableConfiguration = FlowTableConfiguration(), observer: (any RedirectedFlowObserver)? = nil,
        sharedFile: SharedFlowFile? = nil
    ) throws(FlowTableConfigurationError) {
        try configuration.validate()
        self.configuration = configuration
        let limit = configuration.limit
        let (shardCount, slabCapacity) = Self.shardLayout(for: configuration)
        if let sharedFile {
            precondition(
                sharedFile.shardCount == shardCount && sharedFile.slabCapacity == slabCapacity,
                "the live table file was made for another table size")
        }
        self.sharedFile = sharedFile
        self.shardCount = shardCount
        hasher = FlowHasher(seed: configuration.seed ?? UInt64.random(in: .min ... .max))
        occupancy = FlowOccupancy(limit: limit)
        let tombstonesPerShard = (configuration.tombstoneCapacity + shardCount - 1) / shardCount
        let eventsPerShard = (configuration.eventCapacity + shardCount - 1) / shardCount
        let hasher = self.hasher
        let occupancy = self.occupancy
        shards = LockedShards(count: shardCount) { number in
            FlowShard(
                number: number, slabCapacity: slabCapacity, tombstoneCapacity: tombstonesPerShard,
                eventCapacity: eventsPerShard, hasher: hasher, configuration: configuration, occupancy: occupancy,
                observer: observer, sharedRegion: sharedFile?.region(number))
        }
    }

    /// The shard of a (protocol, client) hash: its high 32 bits scaled to the shard count.
    @inline(__always)
    private func shardIndex(_ clientHash: UInt64) -> Int {
        Int(truncatingIfNeeded: ((clientHash >> 32) &* UInt64(shardCount)) >> 32)
    }

    // MARK: Packet path

    /// An original-direction packet (client -> destination) as it arrived.
    ///
    /// `decide` is called only when no live flow has this tuple and the packet may start one
    /// (a lone TCP SYN, any UDP packet); it runs under the shard's lock, so it must be quick and
    /// must not call back into the table. It returns nil when the flow should be redirected but
    /// there is nowhere to redirect it to: the packet is `.refused(.noRedirectAddress)`, no flow
    /// is created. `sequence` (TCP) lets the table refuse blind resets;
    /// without it every reset is believed.
    public func handleOriginal(
        _ tuple: FlowTuple, tcpFlags: TCPFlags, sequence: TCPSequenceSpan? = nil, length: Int, now: UInt32,
        decide: (FlowTuple) -> FlowDecision?
    ) -> OriginalOutcome {
        let clientHash = hasher.clientHash(proto: tuple.proto, client: tuple.source)
        return shards.withLock(shardIndex(clientHash)) {
            $0.handleOriginal(
                tuple, clientHash: clientHash, tcpFlags: tcpFlags, sequence: sequence, length: length, now: now,
                decide: decide)
        }
    }

    /// A reply-direction packet as seen on the wire (source = the local redirect target,
    /// destination = the client). Replies never create flows.
    public func handleReply(_ tuple: FlowTuple, tcpFlags: TCPFlags, length: Int, now: UInt32) -> ReplyOutcome {
        let clientHash = hasher.clientHash(proto: tuple.proto, client: tuple.destination)
        return shards.withLock(shardIndex(clientHash)) {
            $0.handleReply(tuple, clientHash: clientHash, tcpFlags: tcpFlags, length: length, now: now)
        }
    }

    /// The flow an ICMP or ICMPv6 error quoting `quoted` is about, as the kernel's conntrack
    /// finds the master of a RELATED packet (icmp_error_message: the inverted inner tuple), in
    /// the direction the error was queued in:
    /// - `.original` (raw PREROUTING / raw OUTPUT): the quote must be a reply as the client saw
    ///   it, original destination -> client, i.e. the reverse of a flow's ORIGINAL tuple; the
    ///   answer is the redirect target, the quote's new source and the error's new destination.
    /// - `.reply` (mangle OUTPUT): the quote must be a client's packet as the proxy got it,
    ///   client -> redirect target, the reverse of a flow's REPLY tuple; the answer is the
    ///   original destination, the quote's new destination and the error's new source.
    /// A quote in the other direction, or of no flow, is `.unmatched`. Read only: nothing is
    /// created, removed, counted or timed, whatever the error says.
    public func related(quoted: FlowTuple, direction: PacketMetadata.Direction, now: UInt32) -> RelatedOutcome {
        let client = direction == .original ? quoted.destination : quoted.source
        let clientHash = hasher.clientHash(proto: quoted.proto, client: client)
        return shards.withLock(shardIndex(clientHash)) {
            $0.related(quoted: quoted, direction: direction, clientHash: clientHash, now: now)
        }
    }

    /// Where a proxy's connection really was going: `client` is the peer of the accepted socket,
    /// `local` its own end (the reply tuple `local -> client`, as the kernel's getorigdst looks it up).
    public func lookup(proto: TransportProtocol, client: Endpoint, local: Endpoint, now: UInt32) -> FlowLookupResult {
        let clientHash = hasher.clientHash(proto: proto, client: client)
        return shards.withLock(shardIndex(clientHash)) {
            $0.lookup(proto: proto, client: client, local: local, clientHash: clientHash, now: now)
        }
    }

    // MARK: Kernel reports (kernel-nat mode)

    /// What the kernel's conntrack reports about a flow the daemon handed to its NAT: the flow
    /// takes the kernel's state and timeout (plus `grace`, the longest gap between two reports
    /// of a flow the kernel keeps), leaves on a destroy, moves its reply tuple where the
    /// kernel's NAT really sent it, and is entered if the table had lost it.
    @discardableResult
    public func applyKernelReport(_ report: KernelFlowReport, grace: UInt32, now: UInt32) -> KernelReportOutcome {
        if let first = report.firstPacketClient, !report.destroyed {
            // The kernel's NAT gave the client another port: the flow the datapath entered under
            // the client's own port gives way to the one keyed as the proxy sees the client.
            let tuple = FlowTuple(proto: report.original.proto, source: first, destination: report.original.destination)
            let firstHash = hasher.clientHash(proto: tuple.proto, client: first)
            _ = shards.withLock(shardIndex(firstHash)) { $0.removeUnreported(tuple, clientHash: firstHash, createdBefore: .max, now: now) }
        }
        let clientHash = hasher.clientHash(proto: report.original.proto, client: report.original.source)
        return shards.withLock(shardIndex(clientHash)) {
            $0.applyKernelReport(report, clientHash: clientHash, grace: grace, now: now)
        }
    }

    /// Kernel-nat mode: whether the kernel's own timeout for the flow a lookup of (client, local)
    /// would answer from has passed since its last report; the caller then asks the kernel
    /// about that one entry by its REPLY tuple, local -> client (`ConntrackEventSource.entry`).
    public func kernelExpiryPassed(proto: TransportProtocol, client: Endpoint, local: Endpoint, now: UInt32) -> Bool {
        let clientHash = hasher.clientHash(proto: proto, client: client)
        return shards.withLock(shardIndex(clientHash)) {
            $0.kernelExpiryPassed(proto: proto, client: client, local: local, clientHash: clientHash, now: now)
        }
    }

    /// Removes the redirected flows created before `before` whose original tuple is not in
    /// `present` (a full read of the kernel's entries: it no longer has them, their destroy
    /// events were lost, or their first packet never got through). Returns how many were
    /// removed. Not for the packet path: it reads every flow.
    @discardableResult
    public func removeRedirected(notIn present: Set<FlowTuple>, createdBefore before: UInt32, now: UInt32) -> Int {
        var removed = 0
        for record in records(now: now) where record.redirectTarget != nil && record.created < before {
            let tuple = record.originalTuple
            guard !present.contains(tuple) else { continue }
            let clientHash = hasher.clientHash(proto: tuple.proto, client: tuple.source)
            if shards.withLock(shardIndex(clientHash), { $0.removeUnreported(tuple, clientHash: clientHash, createdBefore: before, now: now) }) {
                removed += 1
            }
        }
        return removed
    }

    // MARK: Maintenance

    /// Removes expired flows, examining at most `budget` slots, continuing where the previous call
    /// stopped and moving across shards (one shard lock at a time). Returns the flows removed.
    /// Calling it with a budget of about limit / 100 every second cleans the table in 100 s.
    @discardableResult
    public func sweep(now: UInt32, budget: Int) -> Int {
        sweepCursor.withLock { cursor in
            var remaining = budget
            var removed = 0
            var finishedShards = 0
            while remaining > 0 && finishedShards < shardCount {
                let start = cursor.slot
                let result = shards.withLock(cursor.shard) { $0.sweep(from: start, budget: remaining, now: now) }
                removed += result.removed
                remaining -= result.scanned
                if let next = result.next {
                    cursor.slot = next
                } else {
                    cursor.shard = cursor.shard + 1 == shardCount ? 0 : cursor.shard + 1
                    cursor.slot = 0
                    finishedShards += 1
                }
            }
            return removed
        }
    }

    /// Flows in the table, including expired ones not yet removed.
    public var count: Int { occupancy.count }

    public var statistics: FlowTableStatistics {
        var total = FlowTableStatistics()
        for index in 0..<shardCount {
            shards.withLock(index) { shard in
                let counters = shard.counters
                total.created &+= counters.created
                total.restored &+= counters.restored
                total.destroyedExpired &+= counters.destroyedExpired
                total.destroyedClosed &+= counters.destroyedClosed
                total.destroyedEvicted &+= counters.destroyedEvicted
                total.destroyedReplaced &+= counters.destroyedReplaced
                total.refusedTableFull &+= counters.refusedTableFull
                total.refusedTupleInUse &+= counters.refusedTupleInUse
                total.untrackedOriginal &+= counters.untrackedOriginal
                total.untrackedReply &+= counters.untrackedReply
                total.ignoredByPolicy &+= counters.ignoredByPolicy
                total.invalid &+= counters.invalid
                total.blindResets &+= counters.blindResets
                total.eventsLost &+= shard.eventsLost
                total.count += shard.count
                shard.addStateCounts(to: &total.byState)
            }
        }
        total.limit = configuration.limit
        return total
    }

    /// Bytes of preallocated storage: flow slabs, both indexes, tombstones and event rings.
    public var storageBytes: Int {
        (0..<shardCount).reduce(sharedFile?.overheadBytes ?? 0) { sum, index in sum + shards.withLock(index) { $0.byteCount } }
    }

    // MARK: Events

    /// Takes the events recorded since the last drain, ordered by time (see `FlowEvent`).
    public func drainEvents() -> [FlowEvent] {
        var events: [FlowEvent] = []
        for index in 0..<shardCount {
            shards.withLock(index) { $0.drainEvents(into: &events) }
        }
        events.sort { ($0.time, $0.shard, $0.sequence) < ($1.time, $1.shard, $1.sequence) }
        return events
    }

    // MARK: Listing and persistence

    /// Every live flow (unordered).
    public func records(now: UInt32) -> [FlowRecord] {
        var records: [FlowRecord] = []
        records.reserveCapacity(count)
        for index in 0..<shardCount {
            shards.withLock(index) { $0.appendRecords(to: &records, now: now) }
        }
        return records
    }

    /// Re-inserts saved flows, skipping expired and inconsistent ones, ones whose tuples are
    /// already taken, and any beyond the limit (nothing is evicted for them). Returns how many
    /// were inserted.
    @discardableResult
    public func restore(_ records: [FlowRecord], now: UInt32) -> Int {
        var restored = 0
        for record in records where record.expires > now && record.inconsistency == nil {
            let clientHash = hasher.clientHash(proto: record.proto, client: record.client)
            if shards.withLock(shardIndex(clientHash), { $0.restore(record, clientHash: clientHash, now: now) }) {
                restored += 1
            }
        }
        return restored
    }

    // MARK: Invariants (tests)

    /// Every disagreement between the table's structures; empty when consistent.
    func invariantViolations() -> [String] {
        var problems: [String] = []
        var total = 0
        for index in 0..<shardCount {
            shards.withLock(index) { shard in
                problems += shard.invariantViolations()
                total += shard.count
            }
        }
        if total != occupancy.count { problems.append("shards hold \(total) flows, occupancy says \(occupancy.count)") }
        if total > configuration.limit { problems.append("\(total) flows exceed the limit \(configuration.limit)") }
        return problems
    }
}
