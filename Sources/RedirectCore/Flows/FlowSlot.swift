/// One flow as it sits in a shard's slab: 94 bytes of fields, a 96-byte stride.
///
/// The memory budget (at most 128 bytes per flow including both indexes) is why this is not a
/// `FlowRecord`: endpoints are split into address and port so no field is padded, the two
/// tuples share the client, and the protocol, state and flags take one byte each. The
/// original tuple is client -> originalDestination; the reply tuple is replySource -> client,
/// where replySource is the redirect target, or the original destination when the flow is
/// tracked without redirect.
struct FlowSlot {
    var client: IPAddress
    var originalDestination: IPAddress
    var replySource: IPAddress
    var originalBytes: UInt64
    var replyBytes: UInt64
    var originalPackets: UInt32
    var replyPackets: UInt32
    /// Expiry time while the slot holds a flow; the next free slot while it is on the free list.
    var expires: UInt32
    var created: UInt32
    /// One past the highest sequence number the client has sent (valid with `.clientSequenceKnown`):
    /// a client reset is believed only at exactly this number (see FlowShard.resetIsBelieved).
    var clientSequenceEnd: UInt32
    var clientPort: UInt16
    var originalDestinationPort: UInt16
    var replySourcePort: UInt16
    var proto: TransportProtocol
    var state: FlowState
    var flags: FlowSlotFlags
    /// False while the slot is on the slab's free list.
    var isOccupied: Bool

    var clientEndpoint: Endpoint { Endpoint(client, clientPort) }
    var originalDestinationEndpoint: Endpoint { Endpoint(originalDestination, originalDestinationPort) }
    var replySourceEndpoint: Endpoint { Endpoint(replySource, replySourcePort) }

    @inline(__always)
    func isExpired(at now: UInt32) -> Bool { now >= expires }

    /// Whether the original tuple is `proto` client -> destination.
    @inline(__always)
    func matchesOriginal(_ proto: TransportProtocol, client: Endpoint, destination: Endpoint) -> Bool {
        clientPort == client.port && originalDestinationPort == destination.port && self.proto == proto
            && self.client == client.address && originalDestination == destination.address
    }

    /// Whether the reply tuple is `proto` source -> client.
    @inline(__always)
    func matchesReply(_ proto: TransportProtocol, source: Endpoint, client: Endpoint) -> Bool {
        clientPort == client.port && replySourcePort == source.port && self.proto == proto
            && self.client == client.address && replySource == source.address
    }

    /// Why the flow ends when its timeout runs out in its current state.
    var expiryReason: FlowEndReason { state.isFinished ? .closed : .expired }

    var record: FlowRecord {
        FlowRecord(
            proto: proto, client: clientEndpoint, originalDestination: originalDestinationEndpoint,
            redirectTarget: flags.contains(.redirected) ? replySourceEndpoint : nil,
            state: state, seenReply: flags.contains(.seenReply), assured: flags.contains(.assured),
            created: created, expires: expires,
            originalPackets: originalPackets, originalBytes: originalBytes,
            replyPackets: replyPackets, replyBytes: replyBytes)
    }
}

extension FlowSlot {
    // In an extension, so the memberwise initializer stays available.
    init(record: FlowRecord) {
        let replySource = record.redirectTarget ?? record.originalDestination
        client = record.client.address
        originalDestination = record.originalDestination.address
        self.replySource = replySource.address
        originalBytes = record.originalBytes
        replyBytes = record.replyBytes
        originalPackets = record.originalPackets
        replyPackets = record.replyPackets
        expires = record.expires
        created = record.created
        clientSequenceEnd = 0  // not persisted: learnt again from the client's next segment
        clientPort = record.client.port
        originalDestinationPort = record.originalDestination.port
        replySourcePort = replySource.port
        proto = record.proto
        state = record.state
        flags = []
        if record.redirectTarget != nil { flags.insert(.redirected) }
        if record.seenReply { flags.insert(.seenReply) }
        if record.assured { flags.insert(.assured) }
        isOccupied = true
    }
}

struct FlowSlotFlags: OptionSet {
    let rawValue: UInt8

    /// The reply source is a redirect target, not the original destination.
    static let redirected = FlowSlotFlags(rawValue: 0x01)
    static let seenReply = FlowSlotFlags(rawValue: 0x02)
    static let assured = FlowSlotFlags(rawValue: 0x04)
    /// The last packet was an original-direction SYN the state machine ignored. A SYN/ACK
    /// answering it resynchronises the flow to SYN_RECV (the kernel's "ignored SYN" handling:
    /// the client lost its state and reopened while we still had the old connection).
    static let ignoredSyn = FlowSlotFlags(rawValue: 0x08)
    /// `clientSequenceEnd` holds a sequence number seen on this flow.
    static let clientSequenceKnown = FlowSlotFlags(rawValue: 0x10)
    /// Kernel-nat mode: the kernel's conntrack has reported this flow (its entry is confirmed),
    /// so a destroy report is about this flow and not about an older one on the same tuple.
    static let kernelConfirmed = FlowSlotFlags(rawValue: 0x20)
}
