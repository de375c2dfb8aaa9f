/// How a `NetfilterQueue` binds and sizes its queue.
public struct NetfilterQueueConfiguration: Sendable, Equatable {
    public var queueNumber: UInt16
    /// Packets taken per wakeup at most (1...256).
    public var batchCapacity: Int = 64
    /// NFQA_CFG_QUEUE_MAXLEN: packets the kernel holds for us before it drops (or, with
    /// `failOpen`, accepts) new ones. The kernel's default is 1024.
    public var maximumQueueLength: UInt32 = 4096
    /// NFQA_CFG_F_FAIL_OPEN: when the queue is full, accept new packets unmodified instead of dropping them.
    public var failOpen: Bool = false
    /// NFQA_CFG_F_GSO: receive GSO packets whole (larger than the MTU, possibly with
    /// NFQA_SKB_CSUMNOTREADY) instead of having the kernel segment them first.
    public var segmentationOffload: Bool = false
    /// NETLINK_NO_ENOBUFS: do not report receive-buffer overruns (the kernel still counts them
    /// in /proc/net/netfilter/nfnetlink_queue).
    public var suppressNoBufferErrors: Bool = false
    /// SO_RCVBUF(FORCE) in bytes; Suricata uses queue length x 1500.
    public var receiveBufferBytes: Int = 8 << 20
    /// Bytes of each packet copied to us; at most 65531 (NFQNL_MAX_COPY_RANGE), the kernel's
    /// cap for 0xffff. A larger packet arrives truncated and cannot be rewritten.
    public var copyRange: UInt32 = 0xffff
    /// The verdict for a packet whose message could not be parsed.
    public var unparsablePacketPolicy: UnparsablePacketPolicy = .drop
    /// Answer unmodified accepts of a batch with one NFQNL_MSG_VERDICT_BATCH message.
    public var batchVerdicts: Bool = true
    /// When nothing is waiting: keep asking (yielding the CPU between tries) for a fixed number
    /// of microseconds before sleeping (0: sleep at once), or adaptively (`AdaptivePollPolicy`).
    /// A sleeping thread's wake-up, not its work, is most of a lone packet's delay; polling
    /// trades CPU time for it.
    public var polling: QueuePolling = .off
    public static let busyPollLimit = 0...100_000

    /// The fixed polling time (0 when adaptive or off); setting it chooses fixed polling.
    public var busyPollMicroseconds: Int {
        get { if case .fixed(let microseconds) = polling { microseconds } else { 0 } }
        set { polling = .fixed(microseconds: newValue) }
    }

    public init(queueNumber: UInt16) {
        self.queueNumber = queueNumber
    }

    /// The largest datagram one packet message can be: the copied bytes plus the netlink,
    /// nfgenmsg and attribute headers (packet header, mark, interfaces, timestamp, hardware
    /// address, skb info, cap length, conntrack info), rounded up generously.
    var slotSize: Int {
        let copied = min(Int(copyRange), VerdictWriter.maximumPayloadLength)
        return (copied + 1024 + 4095) & ~4095
    }

    func validate() throws(KernelError) {
        guard (1...256).contains(batchCapacity) else {
            throw .invalidConfiguration("batch capacity \(batchCapacity) is out of range (1-256)")
        }
        guard maximumQueueLength > 0 else { throw .invalidConfiguration("queue length must be positive") }
        guard receiveBufferBytes > 0 else { throw .invalidConfiguration("receive buffer size must be positive") }
        guard copyRange > 0 else { throw .invalidConfiguration("copy range must be positive") }
        guard Self.busyPollLimit.contains(busyPollMicroseconds) else {
            throw .invalidConfiguration("busy poll of \(busyPollMicroseconds) µs is out of range (\(Self.busyPollLimit))")
        }
    }
}
