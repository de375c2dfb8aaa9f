import RedirectCore

/// One queued packet as the kernel described it. `payload` points into the batch's
/// receive buffer: the engine rewrites it in place and sets `verdict`.
public struct QueuedPacket {
    /// The kernel's packet id within the queue (the verdict names it).
    public var id: UInt32
    /// The link-layer protocol, ETH_P_IP (0x0800) or ETH_P_IPV6 (0x86DD).
    public var hardwareProtocol: UInt16
    /// The netfilter hook number (`NetfilterHook`'s raw value).
    public var hook: UInt8
    /// NFQA_IFINDEX_INDEV: the interface the packet arrived on, 0 when none (OUTPUT).
    public var inputInterface: UInt32
    /// NFQA_IFINDEX_OUTDEV, 0 when none (PREROUTING).
    public var outputInterface: UInt32
    /// The packet's firewall mark.
    public var mark: UInt32
    /// NFQA_SKB_CSUMNOTREADY: the L4 checksum holds only the pseudo-header sum; it must be
    /// computed in full, never updated incrementally.
    public var checksumNotReady: Bool
    /// NFQA_SKB_GSO: a segmentation-offload packet, larger than the MTU.
    public var isGSO: Bool
    /// The packet's real length. Larger than `payload.count` when the kernel cut the copy
    /// short (NFQA_CAP_LEN); such a packet can only be accepted unmodified or dropped.
    public var packetLength: Int
    /// The packet from its IP header on, inside the batch's buffer.
    public var payload: UnsafeMutableRawBufferPointer
    public var verdict: Verdict

    public init(
        id: UInt32, hardwareProtocol: UInt16, hook: UInt8, inputInterface: UInt32 = 0, outputInterface: UInt32 = 0,
        mark: UInt32 = 0, checksumNotReady: Bool = false, isGSO: Bool = false, packetLength: Int,
        payload: UnsafeMutableRawBufferPointer, verdict: Verdict = .accept
    ) {
        self.id = id
        self.hardwareProtocol = hardwareProtocol
        self.hook = hook
        self.inputInterface = inputInterface
        self.outputInterface = outputInterface
        self.mark = mark
        self.checksumNotReady = checksumNotReady
        self.isGSO = isGSO
        self.packetLength = packetLength
        self.payload = payload
        self.verdict = verdict
    }

    /// The payload is only part of the packet (see `packetLength`).
    public var isTruncated: Bool { packetLength > payload.count }

    public var netfilterHook: NetfilterHook? { NetfilterHook(rawValue: hook) }

    /// The core's view of where the packet was queued, for a queue of the given direction.
    /// Nil for hooks the daemon does not queue from.
    public func metadata(direction: PacketMetadata.Direction) -> PacketMetadata? {
        let coreHook: PacketMetadata.Hook
        switch netfilterHook {
        case .preRouting: coreHook = .preRouting
        case .localOut: coreHook = .localOut
        default: return nil
        }
        return PacketMetadata(hook: coreHook, direction: direction, inputInterface: inputInterface, checksumNotReady: checksumNotReady)
    }
}

/// Netfilter hook numbers (enum nf_inet_hooks).
public enum NetfilterHook: UInt8, Sendable {
    case preRouting = 0
    case localIn = 1
    case forward = 2
    case localOut = 3
    case postRouting = 4
}
