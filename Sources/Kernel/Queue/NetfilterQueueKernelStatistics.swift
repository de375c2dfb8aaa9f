import SystemCalls

/// One line of /proc/net/netfilter/nfnetlink_queue: the kernel's own view of a bound queue.
public struct NetfilterQueueKernelStatistics: Equatable, Sendable {
    public var queueNumber: UInt16
    /// Netlink port id of the socket bound to the queue.
    public var portID: UInt32
    /// Packets waiting for a verdict right now.
    public var queueTotal: UInt32
    /// 0 none, 1 meta, 2 packet.
    public var copyMode: UInt8
    public var copyRange: UInt32
    /// Packets dropped (or, fail-open, accepted) because the queue was full.
    public var queueDropped: UInt32
    /// Packets lost because the socket's receive buffer was full.
    public var userDropped: UInt32
    /// The last packet id handed out.
    public var idSequence: UInt32

    public init(
        queueNumber: UInt16, portID: UInt32, queueTotal: UInt32, copyMode: UInt8, copyRange: UInt32, queueDropped: UInt32,
        userDropped: UInt32, idSequence: UInt32
    ) {
        self.queueNumber = queueNumber
        self.portID = portID
        self.queueTotal = queueTotal
        self.copyMode = copyMode
        self.copyRange = copyRange
        self.queueDropped = queueDropped
        self.userDropped = userDropped
        self.idSequence = idSequence
    }

    /// The file in the calling thread's network namespace (/proc/net follows the process's
    /// first thread; thread-self follows this one).
    public static let defaultPath = "/proc/thread-self/net/netfilter/nfnetlink_queue"

    /// Reads every bound queue. A missing file (no queue was ever bound, or the module is not
    /// loaded) reads as no queues.
    public static func read(path: String = defaultPath) throws(KernelError) -> [NetfilterQueueKernelStatistics] {
        let bytes: [UInt8]
        do {
            bytes = try kernelCall { () throws(SystemCallError) in try Descriptor.readFile(path) }
        } catch .system(_, .noSuchFile) {
            return []
        }
        return parse(String(decoding: bytes, as: UTF8.self))
    }

    /// Parses the file's text: per line `queue portid total copy_mode copy_range
    /// queue_dropped user_dropped id_sequence 1` (nfqnl_seq_show). Lines that do not have
    /// that form are skipped.
    public static func parse(_ text: String) -> [NetfilterQueueKernelStatistics] {
        text.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 8, let queue = UInt16(fields[0]), let portID = UInt32(fields[1]),
                let total = UInt32(fields[2]), let mode = UInt8(fields[3]), let range = UInt32(fields[4]),
                let queueDropped = UInt32(fields[5]), let userDropped = UInt32(fields[6]), let sequence = UInt32(fields[7])
            else { return nil }
            return NetfilterQueueKernelStatistics(
                queueNumber: queue, portID: portID, queueTotal: total, copyMode: mode, copyRange: range,
                queueDropped: queueDropped, userDropped: userDropped, idSequence: sequence)
        }
    }
}
