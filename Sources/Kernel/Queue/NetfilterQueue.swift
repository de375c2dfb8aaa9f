import CNetfilterQueue
import CSystemCalls
import Glibc
import RedirectCore
import SystemCalls

/// A kernel NFQUEUE bound over netlink (libmnl + libnetfilter_queue's nfq_nlmsg_* API).
///
/// Receives with one recvmmsg per wakeup (poll only when nothing is ready, after busy polling
/// as configured: fixed, or as `AdaptivePollPolicy` decides), parses in place, and answers a
/// batch with one sendmsg whose payload iovecs point into the receive buffers.
/// Nothing on that path allocates. `receive` and `sendVerdicts` belong to one thread;
/// `counters` and `interrupt()` are safe from any thread.
public final class NetfilterQueue: PacketQueue, @unchecked Sendable {
    public let configuration: NetfilterQueueConfiguration
    public var queueNumber: UInt16 { configuration.queueNumber }
    /// The socket's netlink port id, as /proc/net/netfilter/nfnetlink_queue shows it.
    public let portID: UInt32
    /// The receive buffer the kernel granted (SO_RCVBUF as read back; the kernel doubles requests).
    public let effectiveReceiveBufferBytes: Int

    private let socket: NetlinkSocket
    private let wakeUp: WakeUpChannel
    private let cells = PacketQueueCounterCells()
    private let writer: VerdictWriter
    private let sendLimit: Int
    private let busyPollNanoseconds: Int64
    private let adaptivePolling: Bool
    /// Read and changed by the receiving thread only.
    private var pollPolicy: AdaptivePollPolicy
    private let receiveIovecs: UnsafeMutablePointer<iovec>
    private let receivedLengths: UnsafeMutablePointer<UInt32>
    private let receivedFlags: UnsafeMutablePointer<Int32>
    private var sendMessage = msghdr()

    /// Opens a netlink socket, sizes its buffers and binds `configuration.queueNumber`.
    /// Throws `.netlink(..., EBUSY)` when another socket holds the queue, EPERM without CAP_NET_ADMIN.
    public convenience init(configuration: NetfilterQueueConfiguration) throws(KernelError) {
        try self.init(configuration: configuration, adopting: nil)
    }

    /// With `adopting`, takes over a socket a previous process bound to the queue (kept by the
    /// service manager; `AdoptedSocket.notAQueueSocket` checks its kind): no BIND (the binding
    /// belongs to the socket; a second BIND is EBUSY), the copy mode, length and flags sent
    /// again, packets the previous process took but never answered handed back (NF_REPEAT).
    /// Throws, closing the descriptor, when the socket is not bound to this queue (EPERM, ENODEV).
    public init(configuration: NetfilterQueueConfiguration, adopting: CInt?) throws(KernelError) {
        try configuration.validate()
        self.configuration = configuration
        let lastID = adopting == nil ? 0 : QueueBinding.lastPacketID(queue: configuration.queueNumber)
        let socket: NetlinkSocket
        if let adopting {
            socket = try NetlinkSocket(adopting: adopting)
        } else {
            socket = try NetlinkSocket(bus: NETLINK_NETFILTER)
        }
        self.socket = socket
        portID = socket.portID
        wakeUp = try kernelCall { () throws(SystemCallError) in try WakeUpChannel() }
        effectiveReceiveBufferBytes = try kernelCall { () throws(SystemCallError) in
            try Descriptor.setBufferSize(
                socket.descriptor, bytes: configuration.receiveBufferBytes, force: SO_RCVBUFFORCE, plain: SO_RCVBUF,
                label: "setsockopt(SO_RCVBUF)")
        }
        // A batch of rewritten packets goes out in one datagram; netlink refuses a datagram
        // larger than the send buffer (EMSGSIZE), so size it for a full batch and split above it.
        let grantedSendBuffer = try kernelCall { () throws(SystemCallError) in
            try Descriptor.setBufferSize(
                socket.descriptor, bytes: configuration.batchCapacity * (configuration.slotSize + 64), force: SO_SNDBUFFORCE,
                plain: SO_SNDBUF, label: "setsockopt(SO_SNDBUF)")
        }
        sendLimit = max(grantedSendBuffer - 64, 4096)
        if configuration.suppressNoBufferErrors {
            try kernelCall { () throws(SystemCallError) in
                try Descriptor.setOption(
                    socket.descriptor, level: SOL_NETLINK, name: NETLINK_NO_ENOBUFS, value: 1, label: "setsockopt(NETLINK_NO_ENOBUFS)")
            }
        }
        writer = VerdictWriter(batchCapacity: configuration.batchCapacity)
        busyPollNanoseconds = Int64(configuration.busyPollMicroseconds) * 1000
        adaptivePolling = configuration.polling == .adaptive
        pollPolicy = AdaptivePollPolicy(limits: .standard)
        receiveIovecs = .allocate(capacity: configuration.batchCapacity)
        receivedLengths = .allocate(capacity: configuration.batchCapacity)
        receivedFlags = .allocate(capacity: configuration.batchCapacity)
        try QueueBinding.bind(socket: socket, configuration: configuration, alreadyBound: adopting != nil)
        if adopting != nil {
            // Best effort: a failure here leaves those packets to the senders' retransmissions.
            orphansReleased = (try? QueueBinding.releaseOrphans(socket: socket, queue: configuration.queueNumber, upTo: lastID)) ?? false
        } else {
            orphansReleased = false
        }
    }

    /// Whether adoption found packets the previous process had taken and not answered (sent back
    /// through the rules with NF_REPEAT).
    public let orphansReleased: Bool

    /// The netlink socket, for the service manager's descriptor store; owned by this queue.
    public var descriptor: CInt { socket.descriptor }

    deinit {
        receiveIovecs.deallocate()
        receivedLengths.deallocate()
        receivedFlags.deallocate()
    }

    public var counters: PacketQueueCounters { cells.snapshot }

    public func makeBatch() -> PacketBatch {
        PacketBatch(capacity: configuration.batchCapacity, slotSize: configuration.slotSize)
    }

    public func interrupt() { wakeUp.signal() }

    public func receive(into batch: PacketBatch, timeoutMilliseconds: Int32) throws(KernelError) -> ReceiveResult {
        try checkFits(batch)
        batch.removeAll()
        for index in 0..<batch.capacity {
            let slot = batch.slot(index)
            receiveIovecs[index] = iovec(iov_base: slot.baseAddress, iov_len: slot.count)
        }
        var delta = PacketQueueCounters()
        defer { cells.add(delta) }
        // Spinning: from when, and until when (0: not decided yet in this call; -1: no spin).
        var spinStart: Int64 = 0
        var spinDeadline: Int64 = 0
        while true {
            let outcome = try syscall("recvmmsg(NFQUEUE \(queueNumber))") {
                nfqr_receive_datagrams(socket.descriptor, receiveIovecs, receivedLengths, receivedFlags, UInt32(batch.capacity))
            }
            switch outcome {
            case .completed(let datagrams):
                for index in 0..<Int(datagrams) {
                    let bytes = UnsafeMutableRawBufferPointer(rebasing: batch.slot(index)[..<Int(receivedLengths[index])])
                    let truncated = receivedFlags[index] & CInt(MSG_TRUNC) != 0
                    PacketMessageParser.parse(datagram: bytes, truncated: truncated, into: batch, counters: &delta)
                }
                if batch.count > 0 {
                    delta.received &+= UInt64(batch.count)
                    delta.batches &+= 1
                }
                if adaptivePolling {
                    let now = Self.monotonicNanoseconds()
                    if spinDeadline > 0 { pollPolicy.spun(from: spinStart, to: now) }
                    pollPolicy.batchArrived(at: now)
                }
                return .received
            case .noBufferSpace:
                delta.noBufferSpace &+= 1
            case .wouldBlock:
                if spinDeadline >= 0 && (adaptivePolling || busyPollNanoseconds > 0) {
                    let now = Self.monotonicNanoseconds()
                    if spinDeadline == 0 {
                        spinStart = now
                        if adaptivePolling {
                            spinDeadline = pollPolicy.spinDeadline(at: now) ?? -1
                        } else {
                            spinDeadline = now + busyPollNanoseconds
                        }
                    }
                    if now < spinDeadline {
                        // Let any runnable thread have this CPU, then ask again.
                        sched_yield()
                        continue
                    }
                    if adaptivePolling && spinDeadline > 0 { pollPolicy.spun(from: spinStart, to: now) }
                    spinDeadline = -1
                }
                switch try kernelCall({ () throws(SystemCallError) in
                    try ReadinessWait.wait(for: socket.descriptor, wakeUp: wakeUp, timeoutMilliseconds: timeoutMilliseconds)
                }) {
                case .readable: continue
                case .wokenUp: return .interrupted
                case .timedOut: return .timedOut
                }
            }
        }
    }

    /// CLOCK_MONOTONIC in nanoseconds (vDSO: no system call).
    private static func monotonicNanoseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Int64(now.tv_sec) &* 1_000_000_000 &+ Int64(now.tv_nsec)
    }

    public func sendVerdicts(for batch: PacketBatch) throws(KernelError) {
        try checkFits(batch)
        var delta = PacketQueueCounters()
        defer {
            cells.add(delta)
            batch.removeAll()
        }
        let descriptor = socket.descriptor
        var sendErrors: UInt64 = 0
        defer { delta.sendErrors &+= sendErrors }
        try writer.write(
            batch: batch, queueNumber: queueNumber, unparsedPolicy: configuration.unparsablePacketPolicy,
            useBatchVerdict: configuration.batchVerdicts, sendLimit: sendLimit, counters: &delta
        ) { (iovecs, _) throws(KernelError) in
            sendMessage.msg_iov = iovecs.baseAddress
            sendMessage.msg_iovlen = iovecs.count
            // ENOBUFS / EAGAIN here are transient kernel memory pressure: retry a little, then
            // leave the packets queued (counted) rather than stall the datapath.
            for _ in 0..<3 {
                let result: SyscallResult<Int>
                do throws(KernelError) {
                    result = try syscall("sendmsg(NFQUEUE \(queueNumber) verdicts)") { sendmsg(descriptor, &sendMessage, 0) }
                } catch {
                    sendErrors &+= 1
                    throw error
                }
                if case .completed = result { return }
                sendErrors &+= 1
            }
        }
    }

    private func checkFits(_ batch: PacketBatch) throws(KernelError) {
        guard batch.capacity <= configuration.batchCapacity, batch.slotSize == configuration.slotSize else {
            throw .invalidConfiguration("a batch must come from the same queue's makeBatch()")
        }
    }
}
