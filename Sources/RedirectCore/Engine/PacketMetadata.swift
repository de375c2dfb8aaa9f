/// Where the kernel queued a packet, and what it told us about it.
///
/// The daemon binds separate queues for the two directions (see docs/architecture.md):
/// original-direction packets are queued from `raw PREROUTING` / `raw OUTPUT`, before the
/// kernel's conntrack; replies from the local proxy are queued from `mangle OUTPUT`, after it.
public struct PacketMetadata: Sendable {
    public enum Hook: UInt8, Sendable {
        /// Arrived from the network (`--redirect` rules apply).
        case preRouting
        /// Sent by a program on this host (`--redirect-local` rules, and the proxy's replies).
        case localOut
    }

    public enum Direction: UInt8, Sendable {
        /// Client to (original) server: destinations are rewritten to the proxy.
        case original
        /// Proxy back to client: sources are rewritten to the original destination.
        case reply
    }

    public var hook: Hook
    public var direction: Direction
    /// Index of the interface the packet came in on (0 when there is none, as on OUTPUT).
    public var inputInterface: UInt32
    /// The kernel's NFQA_SKB_CSUMNOTREADY: the L4 checksum field holds only the
    /// pseudo-header sum, so it must be computed in full, never updated incrementally.
    public var checksumNotReady: Bool

    public init(hook: Hook, direction: Direction, inputInterface: UInt32 = 0, checksumNotReady: Bool = false) {
        self.hook = hook
        self.direction = direction
        self.inputInterface = inputInterface
        self.checksumNotReady = checksumNotReady
    }
}
