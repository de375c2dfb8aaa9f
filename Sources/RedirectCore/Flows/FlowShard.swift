/// One lock's worth of the flow table: a slab of flows, the ORIGINAL and REPLY tuple indexes
/// (the kernel's `tuplehash[IP_CT_DIR_ORIGINAL]` / `[IP_CT_DIR_REPLY]`) and the per-flow logic.
///
/// A flow lives in the shard chosen by its (protocol, client endpoint), which both of its tuples
/// contain, so every operation on a flow touches exactly one shard. Nothing here allocates
/// except `records` and the event drain; nothing here takes another lock.
struct FlowShard: ~Copyable {
    private var slab: FlowSlab
    private var originalIndex: FlowIndex
    private var replyIndex: FlowIndex
    private var tombstones: FixedRing<FlowTombstone>
    private var events: FixedRing<FlowEvent>
    private let hasher: FlowHasher
    private let timeouts: FlowTimeouts
    private let occupancy: FlowOccupancy
    private let evictionScanLimit: Int
    private let shardNumber: Int
    private let observer: (any RedirectedFlowObserver)?
    private var evictionCursor: UInt32 = 0
    private var eventSequence: UInt64 = 0
    private(set) var count = 0
    /// The counter fields of the table's statistics, for this shard.
    private(set) var counters = FlowTableStatistics()
    /// Flows per `FlowState.rawValue`.
    private var stateCounts = InlineArray<11, Int>(repeating: 0)

    init(
        number: Int, slabCapacity: Int, tombstoneCapacity: Int, eventCapacity: Int,
        hasher: FlowHasher, configuration: FlowTableConfiguration, occupancy: FlowOccupancy,
        observer: (any RedirectedFlowObserver)? = nil, sharedRegion: SharedFlowFile.ShardRegion? = nil
    ) {
        if let sharedRegion {
            slab = FlowSlab(capacity: UInt32(slabCapacity), sharedSlots: sharedRegion.slots, control: sharedRegion.control)
        } else {
            slab = FlowSlab(capacity: UInt32(slabCapacity))
        }
        // At most 3/4 full: linear-probing lookups stay short even when the shard is full.
        let indexCapacity = slabCapacity + (slabCapacity + 2) / 3 + 1
        originalIndex = FlowIndex(capacity: indexCapacity)
        replyIndex = FlowIndex(capacity: indexCapacity)
        tombstones = FixedRing(capacity: tombstoneCapacity)
        events = FixedRing(capacity: eventCapacity)
        self.hasher = hasher
        timeouts = configuration.timeouts
        self.occupancy = occupancy
        evictionScanLimit = configuration.evictionScanLimit
        shardNumber = number
        self.observer = observer
    }

    var byteCount: Int {
        slab.byteCount + originalIndex.byteCount + replyIndex.byteCount + tombstones.byteCount + events.byteCount
    }

    var slabCapacity: Int { Int(slab.capacity) }

    // MARK: Packets

    mutating func handleOriginal(
        _ tuple: FlowTuple, clientHash: UInt64, tcpFlags: TCPFlags, sequence: TCPSequenceSpan?, length: Int,
        now: UInt32, decide: (FlowTuple) -> FlowDecision?
    ) -> OriginalOutcome {
        let hash = hasher.tupleHash(clientHash: clientHash, other: tuple.destination)
        if let slot = findOriginal(tuple, hash: hash) {
            if slab[slot].isExpired(at: now) {
                destroy(slot, reason: slab[slot].expiryReason, now: now)
            } else if slab[slot].flags.contains(.kernelConfirmed)
                && (tuple.proto == .udp || TCPStateMachine.Segment(flags: tcpFlags) == .syn)
            {
                // Kernel-nat mode queues only packets that start a conntrack entry: a SYN or a
                // datagram of a flow the kernel had confirmed means that entry is gone and a new
                // connection starts on the tuple. The old entry's late events no longer apply
                // to the new flow, which the kernel has not confirmed yet.
                destroy(slot, reason: .replaced, now: now)
            } else {
                let flow = slab[slot]
                let outcome: OriginalOutcome =
                    flow.flags.contains(.redirected) ? .rewriteDestination(flow.replySourceEndpoint) : .pass
                switch apply(slot, direction: .original, tcpFlags: tcpFlags, sequence: sequence, length: length, now: now) {
                case .tracked:
                    return outcome
                case .closed:
                    destroy(slot, reason: .closed, now: now)
                    return outcome
                case .restart:
                    destroy(slot, reason: .replaced, now: now)
                }
            }
        }
        if tuple.proto == .tcp && TCPStateMachine.Segment(flags: tcpFlags) != .syn {
            counters.untrackedOriginal &+= 1
            return .untracked
        }
        return create(tuple, clientHash: clientHash, hash: hash, sequence: sequence, length: length, now: now, decide: decide)
    }

    /// `tuple` is the reply as seen on the wire: source = reply source, destination = client.
    mutating func handleReply(
        _ tuple: FlowTuple, clientHash: UInt64, tcpFlags: TCPFlags, length: Int, now: UInt32
    ) -> ReplyOutcome {
        let hash = hasher.tupleHash(clientHash: clientHash, other: tuple.source)
        guard let slot = findReply(tuple.proto, source: tuple.source, client: tuple.destination, hash: hash) else {
            counters.untrackedReply &+= 1
            return .untracked
        }
        if slab[slot].isExpired(at: now) {
            destroy(slot, reason: slab[slot].expiryReason, now: now)
            counters.untrackedReply &+= 1
            return .untracked
        }
        let flow = slab[slot]
        let outcome: ReplyOutcome =
            flow.flags.contains(.redirected) ? .rewriteSource(flow.originalDestinationEndpoint) : .pass
        // A restart needs an original-direction SYN, so `apply` never asks for one here.
        if apply(slot, direction: .reply, tcpFlags: tcpFlags, sequence: nil, length: length, now: now) == .closed {
            destroy(slot, reason: .closed, now: now)
        }
        return outcome
    }

    /// The flow an ICMP error quoting `quoted` is about (see `FlowTable.related`). Reads only:
    /// no flow is created, destroyed or accounted, no state or timer moves, even for an expired
    /// flow, which is simply not matched.
    func related(quoted: FlowTuple, direction: PacketMetadata.Direction, clientHash: UInt64, now: UInt32) -> RelatedOutcome {
        let slot: UInt32?
        switch direction {
        case .original:
            // The quote is a reply the client got (original destination -> client).
            let hash = hasher.tupleHash(clientHash: clientHash, other: quoted.source)
            slot = findOriginal(quoted.reversed, hash: hash)
        case .reply:
            // The quote is a client's packet as the proxy got it (client -> redirect target).
            let hash = hasher.tupleHash(clientHash: clientHash, other: quoted.destination)
            slot = findReply(quoted.proto, source: quoted.destination, client: quoted.source, hash: hash)
        }
        guard let slot, !slab[slot].isExpired(at: now) else { return .unmatched }
        let flow = slab[slot]
        guard flow.flags.contains(.redirected) else { return .notRedirected }
        return .translate(direction == .original ? flow.replySourceEndpoint : flow.originalDestinationEndpoint)
    }

    mutating func lookup(
        proto: TransportProtocol, client: Endpoint, local: Endpoint, clientHash: UInt64, now: UInt32
    ) -> FlowLookupResult {
        let hash = hasher.tupleHash(clientHash: clientHash, other: local)
        if let slot = findReply(proto, source: local, client: client, hash: hash) {
            let flow = slab[slot]
            if flow.isExpired(at: now) {
                destroy(slot, reason: flow.expiryReason, now: now)
                return .expired(flow.expiryReason)
            }
            return flow.flags.contains(.redirected) ? .redirected(original: flow.originalDestinationEndpoint) : .notRedirected
        }
        if let tombstone = tombstones.newest(where: { $0.matches(proto, client: client, local: local) }) {
            return .expired(tombstone.reason)
        }
        return .notFound
    }

    // MARK: Flow life

    /// `.closed`: the packet ended the flow; the caller destroys it (after the slot's write).
    private enum PacketEffect { case tracked, restart, closed }

    /// Accounts a packet of a live flow and moves its state; `.restart` when it opens a new connection on the tuple.
    /// `sequence` is the span of an original-direction TCP segment (nil for replies, which the
    /// local proxy's kernel sends and nobody on the network can forge).
    ///
    /// Every in-place write to a slot happens in here, between the slab's `beginWrite` and
    /// `endWrite` (see FlowSlab: a crash mid-update leaves the slot marked dirty).
    @inline(__always)
    private mutating func apply(
        _ slot: UInt32, direction: PacketMetadata.Direction, tcpFlags: TCPFlags, sequence: TCPSequenceSpan?,
        length: Int, now: UInt32
    ) -> PacketEffect {
        slab.beginWrite(slot)
        defer { slab.endWrite(slot) }
        return update(slot, direction: direction, tcpFlags: tcpFlags, sequence: sequence, length: length, now: now)
    }

    private mutating func update(
        _ slot: UInt32, direction: PacketMetadata.Direction, tcpFlags: TCPFlags, sequence: TCPSequenceSpan?,
        length: Int, now: UInt32
    ) -> PacketEffect {
        if slab[slot].proto == .udp {
            account(slot, direction: direction, length: length)
            applyUDP(slot, direction: direction, now: now)
            return .tracked
        }
        guard let segment = TCPStateMachine.Segment(flags: tcpFlags) else {
            account(slot, direction: direction, length: length)
            counters.invalid &+= 1
            return .tracked
        }
        if let sequence {
            if segment == .rst && !resetIsBelieved(slot, sequence) {
                account(slot, direction: direction, length: length)
                counters.blindResets &+= 1
                return .tracked
            }
            noteClientSequence(slot, sequence)
        }
        let old = slab[slot].state
        let hadReply = slab[slot].flags.contains(.seenReply)
        let transition = TCPStateMachine.transition(from: old, on: segment, direction: direction)
        if transition == .move(to: .synSent) && old.isFinished {
            // A new connection on the old tuple: the caller replaces the flow and counts the SYN there.
            return .restart
        }
        account(slot, direction: direction, length: length)
        switch transition {
        case .invalid:
            counters.invalid &+= 1
        case .ignore:
            if direction == .reply && segment == .synAck && slab[slot].flags.contains(.ignoredSyn) {
                // The SYN/ACK answers the SYN we ignored: the peer really did start over.
                setState(slot, .synReceived)
                // The client's new connection has its own sequence numbers: learn them again.
                slab[slot].flags.remove([.ignoredSyn, .clientSequenceKnown])
                slab[slot].expires = expiry(now, timeouts.synReceived)
            } else if direction == .original && segment == .syn {
                slab[slot].flags.insert(.ignoredSyn)
            } else {
                slab[slot].flags.remove(.ignoredSyn)
            }
            if direction == .reply { slab[slot].flags.insert(.seenReply) }
        case .move(let new):
            if segment == .rst && !hadReply {
                // Like the kernel: a reset before any reply ends the flow at once.
                return .closed
            }
            setState(slot, new)
            slab[slot].flags.remove(.ignoredSyn)
            if hadReply && (old == .synReceived || old == .established) && new == .established {
                slab[slot].flags.insert(.assured)
            }
            if direction == .reply { slab[slot].flags.insert(.seenReply) }
            slab[slot].expires = expiry(now, timeouts[new])
        }
        return .tracked
    }

    /// How far one client segment may move the client's sequence end at once: more than any
    /// receive window (Linux's default tcp_rmem allows 6 MiB), so real traffic always moves it.
    static let sequenceAdvanceLimit: Int32 = 1 << 24

    /// A reset from the client ends the flow only at exactly the client's next sequence number,
    /// where its kernel sends one (tcp_send_active_reset, or a reset answering the proxy's
    /// segment, whose ack is that number): the kernel's conntrack rule since Linux 5.x. Any other
    /// reset, in the proxy's window or not, is passed on but not believed: the proxy's kernel
    /// answers an in-window one with a challenge ACK (RFC 5961) that a real client answers with
    /// an exact reset, while a blind attacker, guessing 32 bits, never closes the flow.
    private func resetIsBelieved(_ slot: UInt32, _ sequence: TCPSequenceSpan) -> Bool {
        guard slab[slot].flags.contains(.clientSequenceKnown) else { return true }
        return sequence.start == slab[slot].clientSequenceEnd
    }

    /// Moves the client's sequence end forward: never back (retransmissions, reordering), and never
    /// by `sequenceAdvanceLimit` or more at once, so a forged segment cannot prepare a forged
    /// reset. A SYN on a
    /// live flow does not start a new sequence space until the proxy answers it (the ignored-SYN
    /// resync forgets the old one).
    private mutating func noteClientSequence(_ slot: UInt32, _ sequence: TCPSequenceSpan) {
        let advance = Int32(bitPattern: sequence.end &- slab[slot].clientSequenceEnd)
        if !slab[slot].flags.contains(.clientSequenceKnown) || (advance > 0 && advance < Self.sequenceAdvanceLimit) {
            slab[slot].clientSequenceEnd = sequence.end
            slab[slot].flags.insert(.clientSequenceKnown)
        }
    }

    private mutating func account(_ slot: UInt32, direction: PacketMetadata.Direction, length: Int) {
        let bytes = UInt64(clamping: length)
        if direction == .original {
            slab[slot].originalPackets &+= 1
            slab[slot].originalBytes &+= bytes
        } else {
            slab[slot].replyPackets &+= 1
            slab[slot].replyBytes &+= bytes
        }
    }

    /// The kernel's UDP rule: the first answer only marks the flow replied; a packet after that
    /// makes it a stream (assured, longer timeout). One request and one answer (DNS) stay short-lived.
    private mutating func applyUDP(_ slot: UInt32, direction: PacketMetadata.Direction, now: UInt32) {
        if slab[slot].flags.contains(.seenReply) {
            slab[slot].flags.insert(.assured)
            slab[slot].expires = expiry(now, timeouts.udpReplied)
        } else {
            if direction == .reply {
                slab[slot].flags.insert(.seenReply)
                setState(slot, .udpReplied)
            }
            slab[slot].expires = expiry(now, timeouts.udpUnreplied)
        }
    }

    private mutating func create(
        _ tuple: FlowTuple, clientHash: UInt64, hash: UInt32, sequence: TCPSequenceSpan?, length: Int, now: UInt32,
        decide: (FlowTuple) -> FlowDecision?
    ) -> OriginalOutcome {
        let replySource: Endpoint
        var flags: FlowSlotFlags = sequence == nil ? [] : [.clientSequenceKnown]
        guard let decision = decide(tuple) else {
            // Counted with the flows the policy leaves alone (no flow is created), as before;
            // the engine counts the drop by its reason.
            counters.ignoredByPolicy &+= 1
            return .refused(.noRedirectAddress)
        }
        switch decision {
        case .ignore:
            counters.ignoredByPolicy &+= 1
            return .untracked
        case .trackOnly:
            replySource = tuple.destination
        case .redirect(let target):
            replySource = target
            flags.insert(.redirected)
        }
        let replyHash = hasher.tupleHash(clientHash: clientHash, other: replySource)
        if let owner = findReply(tuple.proto, source: replySource, client: tuple.source, hash: replyHash) {
            if slab[owner].isExpired(at: now) {
                destroy(owner, reason: slab[owner].expiryReason, now: now)
            } else if slab[owner].state.isFinished || slab[owner].flags.contains(.kernelConfirmed) {
                // Kernel-nat mode: the kernel's conntrack holds the owner and is told of no
                // closing state we would see (the entry reports new, reply, assured and destroy
                // only), so the kernel's NAT judges the clash: it reuses a closed entry's tuple
                // or drops the new connection's first packet itself.
                destroy(owner, reason: .replaced, now: now)
            } else {
                counters.refusedTupleInUse &+= 1
                return .refused(.tupleInUse)
            }
        }
        let state: FlowState = tuple.proto == .tcp ? .synSent : .udpUnreplied
        let flow = FlowSlot(
            client: tuple.source.address, originalDestination: tuple.destination.address,
            replySource: replySource.address, originalBytes: UInt64(clamping: length), replyBytes: 0,
            originalPackets: 1, replyPackets: 0, expires: expiry(now, timeouts[state]), created: now,
            clientSequenceEnd: sequence?.end ?? 0, clientPort: tuple.source.port, originalDestinationPort: tuple.destination.port,
            replySourcePort: replySource.port, proto: tuple.proto, state: state, flags: flags, isOccupied: true)
        guard let slot = admit(flow, now: now, mayEvict: true) else {
            counters.refusedTableFull &+= 1
            return .refused(.tableFull)
        }
        originalIndex.insert(hash: hash, slot: slot)
        replyIndex.insert(hash: replyHash, slot: slot)
        counters.created &+= 1
        record(.created, slot, now: now)
        if let observer, let redirected = slab[slot].redirectedFlow { observer.redirectedFlowStarted(redirected) }
        return flags.contains(.redirected) ? .rewriteDestination(replySource) : .pass
    }

    /// Puts `flow` in the slab within the table's limit, evicting one flow first if allowed and
    /// needed. The caller adds the index entries.
    private mutating func admit(_ flow: FlowSlot, now: UInt32, mayEvict: Bool) -> UInt32? {
        // Two rounds: an eviction frees a slab slot and a unit of the limit, but another shard
        // may take that unit first.
        for round in 0..<2 {
            if slab.hasFreeSlot && occupancy.reserve() {
                guard let slot = slab.insert(flow) else {
                    occupancy.release()
                    return nil
                }
                count += 1
                stateCounts[Int(flow.state.rawValue)] += 1
                return slot
            }
            guard mayEvict && round == 0 && evictOne(now: now) else { return nil }
        }
        return nil
    }

    /// The kernel's early drop: frees one slot for a new flow by removing an expired flow or one
    /// not yet assured (a half-open TCP handshake, an unanswered UDP exchange), so a flood of
    /// spoofed SYNs can only displace other unfinished flows, never established ones.
    ///
    /// Candidates come from a rotating cursor over the slab, at most `evictionScanLimit` slots per
    /// call: bounded work, and over successive calls every slot is considered in turn (the
    /// kernel likewise scans a bounded number of entries from a random bucket). The first
    /// candidate found is taken, not the oldest: keeping an age order would cost memory per flow.
    private mutating func evictOne(now: UInt32) -> Bool {
        let span = slab.highWater
        guard span > 0 else { return false }
        for _ in 0..<min(evictionScanLimit, Int(span)) {
            let slot = evictionCursor < span ? evictionCursor : 0
            evictionCursor = slot + 1
            guard slab.isOccupied(slot) else { continue }
            if slab[slot].isExpired(at: now) {
                destroy(slot, reason: slab[slot].expiryReason, now: now)
                return true
            }
            if !slab[slot].flags.contains(.assured) {
                destroy(slot, reason: .evicted, now: now)
                return true
            }
        }
        return false
    }

    private mutating func destroy(_ slot: UInt32, reason: FlowEndReason, now: UInt32) {
        let flow = slab[slot]
        let clientHash = hasher.clientHash(proto: flow.proto, client: flow.clientEndpoint)
        originalIndex.remove(hash: hasher.tupleHash(clientHash: clientHash, other: flow.originalDestinationEndpoint), slot: slot)
        replyIndex.remove(hash: hasher.tupleHash(clientHash: clientHash, other: flow.replySourceEndpoint), slot: slot)
        tombstones.append(FlowTombstone(of: flow, reason: reason, ended: now))
        record(.destroyed(reason), slot, now: now)
        if let observer, let redirected = flow.redirectedFlow { observer.redirectedFlowEnded(redirected) }
        switch reason {
        case .expired: counters.destroyedExpired &+= 1
        case .closed: counters.destroyedClosed &+= 1
        case .evicted: counters.destroyedEvicted &+= 1
        case .replaced: counters.destroyedReplaced &+= 1
        }
        stateCounts[Int(flow.state.rawValue)] -= 1
        count -= 1
        slab.remove(slot)
        occupancy.release()
    }

    private mutating func setState(_ slot: UInt32, _ state: FlowState) {
        stateCounts[Int(slab[slot].state.rawValue)] -= 1
        stateCounts[Int(state.rawValue)] += 1
        slab[slot].state = state
    }

    private mutating func record(_ kind: FlowEvent.Kind, _ slot: UInt32, now: UInt32) {
        guard events.capacity > 0 else { return }
        eventSequence &+= 1
        events.append(FlowEvent(kind: kind, time: now, record: slab[slot].record, shard: shardNumber, sequence: eventSequence))
    }

    @inline(__always)
    private func expiry(_ now: UInt32, _ timeout: UInt32) -> UInt32 {
        let (sum, overflow) = now.addingReportingOverflow(timeout)
        return overflow ? .max : sum
    }

    @inline(__always)
    private func findOriginal(_ tuple: FlowTuple, hash: UInt32) -> UInt32? {
        originalIndex.find(hash: hash) { slot in
            slab[slot].matchesOriginal(tuple.proto, client: tuple.source, destination: tuple.destination)
        }
    }

    @inline(__always)
    private func findReply(_ proto: TransportProtocol, source: Endpoint, client: Endpoint, hash: UInt32) -> UInt32? {
        replyIndex.find(hash: hash) { slot in
            slab[slot].matchesReply(proto, source: source, client: client)
        }
    }

    // MARK: Kernel reports (kernel-nat mode)

    /// Applies what the kernel's conntrack says about one of the daemon's flows (see
    /// `FlowTable.applyKernelReport`). The flow's timer becomes the kernel's remaining timeout
    /// plus `grace`, so it cannot expire here while the kernel still keeps it between reports.
    mutating func applyKernelReport(_ report: KernelFlowReport, clientHash: UInt64, grace: UInt32, now: UInt32) -> KernelReportOutcome {
        let tuple = report.original
        let hash = hasher.tupleHash(clientHash: clientHash, other: tuple.destination)
        let found = findOriginal(tuple, hash: hash)
        if report.destroyed {
            // An entry the kernel never confirmed to us may be a new connection on the tuple of
            // the destroyed one (a SYN after TIME_WAIT: the kernel deletes the old entry, then
            // queues the SYN, then reports the new entry).
            guard let slot = found, slab[slot].flags.contains(.kernelConfirmed) else { return .ignored }
            let reason: FlowEndReason = slab[slot].state.isFinished || report.state?.isFinished == true ? .closed : .expired
            destroy(slot, reason: reason, now: now)
            return .removed
        }
        let expires = expiry(now, report.timeout > UInt32.max - grace ? UInt32.max - grace : report.timeout + grace)
        guard let slot = found else {
            // Entered as redirected: only flows the daemon marked are reported.
            let replyHash = hasher.tupleHash(clientHash: clientHash, other: report.replySource)
            if findReply(tuple.proto, source: report.replySource, client: tuple.source, hash: replyHash) != nil { return .ignored }
            var flags: FlowSlotFlags = [.redirected, .kernelConfirmed]
            if report.seenReply { flags.insert(.seenReply) }
            let state = report.state ?? (tuple.proto == .udp ? (report.seenReply ? .udpReplied : .udpUnreplied) : .established)
            if report.assured { flags.insert(.assured) }
            let flow = FlowSlot(
                client: tuple.source.address, originalDestination: tuple.destination.address,
                replySource: report.replySource.address, originalBytes: 0, replyBytes: 0, originalPackets: 0, replyPackets: 0,
                expires: expires, created: now, clientSequenceEnd: expiry(now, report.timeout), clientPort: tuple.source.port,
                originalDestinationPort: tuple.destination.port, replySourcePort: report.replySource.port, proto: tuple.proto,
                state: state, flags: flags, isOccupied: true)
            guard let slot = admit(flow, now: now, mayEvict: false) else { return .ignored }
            originalIndex.insert(hash: hash, slot: slot)
            replyIndex.insert(hash: replyHash, slot: slot)
            counters.created &+= 1
            record(.created, slot, now: now)
            if let observer, let redirected = slab[slot].redirectedFlow { observer.redirectedFlowStarted(redirected) }
            return .adopted
        }
        if !report.current, !slab[slot].flags.contains(.kernelConfirmed), let state = report.state, state.isTCP,
            state.rawValue >= FlowState.finWait.rawValue
        {
            // A closing state for a flow the kernel has not reported yet: the events of the
            // previous connection on the tuple (its TIME_WAIT, then its end), read after this
            // flow's SYN replaced it. The new entry's own events follow.
            return .ignored
        }
        var outcome = KernelReportOutcome.updated
        if slab[slot].replySourceEndpoint != report.replySource && slab[slot].flags.contains(.redirected) {
            // The kernel's NAT chose another address than the daemon (an address changed between
            // the decision and the NAT rule): the kernel's choice is where the proxy sees the flow.
            let newHash = hasher.tupleHash(clientHash: clientHash, other: report.replySource)
            if findReply(tuple.proto, source: report.replySource, client: tuple.source, hash: newHash) == nil {
                if let observer, let redirected = slab[slot].redirectedFlow { observer.redirectedFlowEnded(redirected) }
                let oldHash = hasher.tupleHash(clientHash: clientHash, other: slab[slot].replySourceEndpoint)
                replyIndex.remove(hash: oldHash, slot: slot)
                slab.beginWrite(slot)
                slab[slot].replySource = report.replySource.address
                slab[slot].replySourcePort = report.replySource.port
                slab.endWrite(slot)
                replyIndex.insert(hash: newHash, slot: slot)
                if let observer, let redirected = slab[slot].redirectedFlow { observer.redirectedFlowStarted(redirected) }
                outcome = .rekeyed
            }
        }
        slab.beginWrite(slot)
        if let state = report.state, state.proto == tuple.proto, slab[slot].state != state {
            setState(slot, state)
        } else if report.state == nil, tuple.proto == .tcp {
            // Kernel-nat mode asks the kernel for no TCP state changes (only new, reply, assured
            // and destroy events), so the handshake's progress is read from the status bits;
            // a resync's read of the table brings the exact state.
            let old = slab[slot].state
            if report.assured && (old == .synSent || old == .synReceived) {
                setState(slot, .established)
            } else if report.seenReply && old == .synSent {
                setState(slot, .synReceived)
            }
        }
        slab[slot].flags.insert(.kernelConfirmed)
        // No client segment reaches the daemon once the kernel carries the flow: the field
        // holds when the kernel will drop the entry, as it last said (see `kernelExpiryPassed`).
        slab[slot].flags.remove(.clientSequenceKnown)
        slab[slot].clientSequenceEnd = expiry(now, report.timeout)
        if report.seenReply { slab[slot].flags.insert(.seenReply) }
        if report.assured { slab[slot].flags.insert(.assured) }
        slab[slot].expires = expires
        slab.endWrite(slot)
        return outcome
    }

    /// The original tuple of the kernel-confirmed flow a proxy's lookup names, when the time the
    /// kernel last gave for dropping its entry has passed (the kernel may since have refreshed
    /// it without an event, or dropped it and not told yet): the caller asks the kernel.
    func kernelExpiryPassed(proto: TransportProtocol, client: Endpoint, local: Endpoint, clientHash: UInt64, now: UInt32) -> Bool {
        let hash = hasher.tupleHash(clientHash: clientHash, other: local)
        guard let slot = findReply(proto, source: local, client: client, hash: hash) else { return false }
        let flow = slab[slot]
        return flow.flags.contains(.kernelConfirmed) && now >= flow.clientSequenceEnd
    }

    /// Removes the redirected flow of `tuple` if it was created before `before` (see
    /// `FlowTable.removeRedirected`); true when it did.
    mutating func removeUnreported(_ tuple: FlowTuple, clientHash: UInt64, createdBefore before: UInt32, now: UInt32) -> Bool {
        let hash = hasher.tupleHash(clientHash: clientHash, other: tuple.destination)
        guard let slot = findOriginal(tuple, hash: hash), slab[slot].flags.contains(.redirected), slab[slot].created < before else {
            return false
        }
        destroy(slot, reason: slab[slot].state.isFinished ? .closed : .expired, now: now)
        return true
    }

    // MARK: Maintenance, listing, persistence

    /// Removes expired flows among slab slots `start..<start+budget`; returns slots scanned,
    /// flows removed, and where to continue (nil once the end of the slab is reached).
    mutating func sweep(from start: UInt32, budget: Int, now: UInt32) -> (scanned: Int, removed: Int, next: UInt32?) {
        let end = UInt32(min(UInt64(slab.highWater), UInt64(start) + UInt64(max(budget, 0))))
        var removed = 0
        var slot = start
        while slot < end {
            if slab.isOccupied(slot) && slab[slot].isExpired(at: now) {
                destroy(slot, reason: slab[slot].expiryReason, now: now)
                removed += 1
            }
            slot += 1
        }
        let scanned = Int(end >= start ? end - start : 0)
        return (scanned, removed, end < slab.highWater ? end : nil)
    }

    func appendRecords(to records: inout [FlowRecord], now: UInt32) {
        for slot in 0..<slab.highWater where slab.isOccupied(slot) && !slab[slot].isExpired(at: now) {
            records.append(slab[slot].record)
        }
    }

    /// Re-inserts a saved flow unless its tuples are taken or the table is full (no eviction).
    mutating func restore(_ record: FlowRecord, clientHash: UInt64, now: UInt32) -> Bool {
        let flow = FlowSlot(record: record)
        let hash = hasher.tupleHash(clientHash: clientHash, other: flow.originalDestinationEndpoint)
        let replyHash = hasher.tupleHash(clientHash: clientHash, other: flow.replySourceEndpoint)
        if findOriginal(record.originalTuple, hash: hash) != nil
            || findReply(flow.proto, source: flow.replySourceEndpoint, client: flow.clientEndpoint, hash: replyHash) != nil
        {
            return false
        }
        guard let slot = admit(flow, now: now, mayEvict: false) else { return false }
        originalIndex.insert(hash: hash, slot: slot)
        replyIndex.insert(hash: replyHash, slot: slot)
        counters.restored &+= 1
        if let observer, let redirected = flow.redirectedFlow { observer.redirectedFlowStarted(redirected) }
        return true
    }

    mutating func drainEvents(into collected: inout [FlowEvent]) {
        events.drain { collected.append($0) }
    }

    var eventsLost: UInt64 { events.overwritten }

    func addStateCounts(to byState: inout [FlowState: Int]) {
        for state in FlowState.allCases where stateCounts[Int(state.rawValue)] > 0 {
            byState[state, default: 0] += stateCounts[Int(state.rawValue)]
        }
    }

    // MARK: Invariants (tests)

    /// Every way the shard's structures disagree with each other; empty when consistent.
    func invariantViolations() -> [String] {
        var problems: [String] = []
        var occupied = 0
        var gauge = InlineArray<11, Int>(repeating: 0)
        for slot in 0..<slab.highWater where slab.isOccupied(slot) {
            occupied += 1
            let flow = slab[slot]
            gauge[Int(flow.state.rawValue)] += 1
            let clientHash = hasher.clientHash(proto: flow.proto, client: flow.clientEndpoint)
            let originalHash = hasher.tupleHash(clientHash: clientHash, other: flow.originalDestinationEndpoint)
            let replyHash = hasher.tupleHash(clientHash: clientHash, other: flow.replySourceEndpoint)
            let original = FlowTuple(proto: flow.proto, source: flow.clientEndpoint, destination: flow.originalDestinationEndpoint)
            if findOriginal(original, hash: originalHash) != slot {
                problems.append("shard \(shardNumber) slot \(slot): not reachable by its original tuple")
            }
            if findReply(flow.proto, source: flow.replySourceEndpoint, client: flow.clientEndpoint, hash: replyHash) != slot {
                problems.append("shard \(shardNumber) slot \(slot): not reachable by its reply tuple")
            }
            if flow.state.proto != flow.proto {
                problems.append("shard \(shardNumber) slot \(slot): state \(flow.state) on \(flow.proto)")
            }
        }
        if occupied != count { problems.append("shard \(shardNumber): \(occupied) flows but count \(count)") }
        if occupied + slab.freeListLength != Int(slab.highWater) {
            problems.append("shard \(shardNumber): free list does not cover the unoccupied slots")
        }
        for state in FlowState.allCases where gauge[Int(state.rawValue)] != stateCounts[Int(state.rawValue)] {
            problems.append(
                "shard \(shardNumber): state gauge for \(state) is \(stateCounts[Int(state.rawValue)]), not \(gauge[Int(state.rawValue)])")
        }
        checkIndex(originalIndex, name: "original", into: &problems) { $0.originalDestinationEndpoint }
        checkIndex(replyIndex, name: "reply", into: &problems) { $0.replySourceEndpoint }
        return problems
    }

    /// Every entry of `index` must point at a live flow and carry that flow's current hash.
    private func checkIndex(
        _ index: borrowing FlowIndex, name: String, into problems: inout [String], other: (FlowSlot) -> Endpoint
    ) {
        var entries = 0
        index.forEachEntry { hash, slot in
            entries += 1
            guard slab.isOccupied(slot) else {
                problems.append("shard \(shardNumber): \(name) index points at free slot \(slot)")
                return
            }
            let flow = slab[slot]
            let clientHash = hasher.clientHash(proto: flow.proto, client: flow.clientEndpoint)
            if hasher.tupleHash(clientHash: clientHash, other: other(flow)) != hash {
                problems.append("shard \(shardNumber): \(name) index entry for slot \(slot) has a stale hash")
            }
        }
        if entries != count { problems.append("shard \(shardNumber): \(name) index has \(entries) entries for \(count) flows") }
    }
}
