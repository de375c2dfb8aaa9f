import CConntrack
import CNetfilterQueue
import Glibc
import RedirectCore
import Synchronization
import SystemCalls

/// What `NetlinkConntrackEvents` subscribes to.
public struct ConntrackEventsConfiguration: Sendable, Equatable {
    /// Events are delivered for entries whose `ctmark & markMask == markValue` only.
    public var markValue: UInt32
    /// 0 delivers every TCP and UDP entry's events (no kernel-side filter).
    public var markMask: UInt32
    /// Deliver the entries whose `ctmark & markMask != markValue` instead: with value 0, every
    /// entry with any bit of the mask set (kernel-nat mode's marks, one value per port).
    public var negated: Bool = false
    /// SO_RCVBUF(FORCE) of the event socket: how big a burst of events may queue before the
    /// kernel drops some (`.overrun`). The kernel doubles it for its bookkeeping and raises a
    /// tiny value to its minimum (a few KiB).
    public var receiveBufferBytes: Int = 8 << 20
    /// At most this many events per `receive`, so one burst cannot hold the thread for long.
    public var eventsPerReceive: Int = 256

    public init(
        markValue: UInt32, markMask: UInt32, negated: Bool = false, receiveBufferBytes: Int = 8 << 20, eventsPerReceive: Int = 256
    ) {
        self.markValue = markValue
        self.markMask = markMask
        self.negated = negated
        self.receiveBufferBytes = receiveBufferBytes
        self.eventsPerReceive = eventsPerReceive
    }

    func validate() throws(KernelError) {
        guard markValue & ~markMask == 0 else {
            throw .invalidConfiguration(
                "conntrack mark 0x\(String(markValue, radix: 16)) has bits outside its mask 0x\(String(markMask, radix: 16))")
        }
        guard (1...(1 << 30)).contains(receiveBufferBytes) else {
            throw .invalidConfiguration("conntrack event receive buffer \(receiveBufferBytes) is out of range (1 B-1 GiB)")
        }
        guard (1...65536).contains(eventsPerReceive) else {
            throw .invalidConfiguration("conntrack events per receive \(eventsPerReceive) is out of range (1-65536)")
        }
    }
}

/// Conntrack events from the kernel over ctnetlink, for the entries of one conntrack mark,
/// in the network namespace of the thread that creates it.
///
/// Two netlink sockets: one subscribed to the NEW, UPDATE and DESTROY groups, with a classic
/// BPF socket filter (libnetfilter_conntrack's `nfct_filter_attach`, NFCT_FILTER_MARK) so the
/// kernel drops other entries' events before they are queued: an event storm of unmarked
/// flows (a SYN flood) neither wakes the thread nor fills the buffer. The other socket
/// serves dumps, so their replies never interleave with events. A receive allocates nothing
/// once `events` has grown to its working size.
public final class NetlinkConntrackEvents: ConntrackEventSource, @unchecked Sendable {
    public let configuration: ConntrackEventsConfiguration
    /// The receive buffer the kernel granted (SO_RCVBUF read back).
    public let receiveBufferBytes: Int
    private let events: NetlinkSocket
    private let dumps: Locked<DumpSocket>
    private let wakeUp: WakeUpChannel
    /// One datagram; ctnetlink events are a few hundred bytes.
    private let buffer: UnsafeMutableRawBufferPointer
    private let cells = ConntrackCounterCells()

    public init(configuration: ConntrackEventsConfiguration) throws(KernelError) {
        try configuration.validate()
        self.configuration = configuration
        let groups = UInt32(NF_NETLINK_CONNTRACK_NEW | NF_NETLINK_CONNTRACK_UPDATE | NF_NETLINK_CONNTRACK_DESTROY)
        events = try NetlinkSocket(bus: NETLINK_NETFILTER, groups: groups)
        let descriptor = events.descriptor
        receiveBufferBytes = try kernelCall { () throws(SystemCallError) in
            try Descriptor.setBufferSize(
                descriptor, bytes: configuration.receiveBufferBytes, force: SO_RCVBUFFORCE, plain: SO_RCVBUF,
                label: "setsockopt(SO_RCVBUF, conntrack events)")
        }
        if configuration.markMask != 0 {
            try Self.attachMarkFilter(descriptor, value: configuration.markValue, mask: configuration.markMask, negated: configuration.negated)
        }
        dumps = Locked(DumpSocket(socket: try NetlinkSocket(bus: NETLINK_NETFILTER)))
        wakeUp = try kernelCall { () throws(SystemCallError) in try WakeUpChannel() }
        buffer = .allocate(byteCount: 16 * 1024, alignment: 8)
    }

    deinit { buffer.deallocate() }

    public var counters: ConntrackEventCounters { cells.snapshot }

    public func interrupt() { wakeUp.signal() }

    public func receive(into events: inout [ConntrackEvent], timeoutMilliseconds: Int32) throws(KernelError) -> ConntrackReceiveResult {
        events.removeAll(keepingCapacity: true)
        var delta = ConntrackEventCounters()
        defer { cells.add(delta) }
        let descriptor = self.events.descriptor
        let (value, mask) = (configuration.markValue, configuration.markMask)
        var tookAny = false
        while true {
            let outcome = try syscall("recv(conntrack events)") {
                recv(descriptor, buffer.baseAddress, buffer.count, CInt(MSG_DONTWAIT | MSG_TRUNC))
            }
            switch outcome {
            case .completed(let length):
                tookAny = true
                // MSG_TRUNC: `length` is the datagram's size even when it did not fit; the
                // walker then flags the cut message as truncated.
                let datagram = UnsafeRawBufferPointer(rebasing: buffer[..<Swift.min(length, buffer.count)])
                for message in NetlinkMessages(datagram) {
                    switch ConntrackMessages.read(message, markValue: value, markMask: mask, negated: configuration.negated) {
                    case .event(let event):
                        events.append(event)
                        delta.received &+= 1
                    case .filtered: delta.filtered &+= 1
                    case .malformed: delta.parseErrors &+= 1
                    }
                }
                if events.count >= configuration.eventsPerReceive { return .received }
            case .noBufferSpace:
                delta.overruns &+= 1
                return .overrun
            case .wouldBlock:
                if tookAny { return .received }
                switch try kernelCall({ () throws(SystemCallError) in
                    try ReadinessWait.wait(for: descriptor, wakeUp: wakeUp, timeoutMilliseconds: timeoutMilliseconds)
                }) {
                case .readable: continue
                case .wokenUp: return .interrupted
                case .timedOut: return .timedOut
                }
            }
        }
    }

    public func dump(markValue: UInt32, markMask: UInt32) throws(KernelError) -> [ConntrackEvent] {
        guard markValue & ~markMask == 0 else {
            throw .invalidConfiguration("conntrack mark 0x\(String(markValue, radix: 16)) has bits outside its mask")
        }
        return try dumps.withLock { (dump) throws(KernelError) -> [ConntrackEvent] in
            for _ in 1...5 {
                if let entries = try dump.run(markValue: markValue, markMask: markMask) { return entries }
            }
            throw .unexpectedReply("the conntrack dump kept being interrupted by changes")
        }
    }

    public func entry(reply: FlowTuple) throws(KernelError) -> ConntrackEvent? {
        try dumps.withLock { (dump) throws(KernelError) -> ConntrackEvent? in try dump.get(reply: reply) }
    }

    /// The kernel-side event filter: a classic BPF program libnetfilter_conntrack generates,
    /// which reads CTA_MARK (0 when absent) and drops the message unless `mark & mask == value`
    /// (`negated`: unless it differs).
    private static func attachMarkFilter(_ descriptor: CInt, value: UInt32, mask: UInt32, negated: Bool) throws(KernelError) {
        _ = try syscallCompleting("setsockopt(SO_ATTACH_FILTER, conntrack mark filter)") {
            nfqr_conntrack_attach_mark_filter(descriptor, value, mask, negated ? 1 : 0)
        }
    }
}

/// The dump socket and its request sequence; one dump at a time.
private final class DumpSocket {
    let socket: NetlinkSocket
    var sequence: UInt32 = 0

    init(socket: NetlinkSocket) { self.socket = socket }

    /// One IPCTNL_MSG_CT_GET of a single entry by its REPLY tuple: the entry, or nil on ENOENT.
    func get(reply original: FlowTuple) throws(KernelError) -> ConntrackEvent? {
        sequence &+= 1
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 16 * 1024, alignment: 8)
        defer { buffer.deallocate() }
        let addresses = UnsafeMutableRawBufferPointer.allocate(byteCount: 32, alignment: 8)
        defer { addresses.deallocate() }
        let ipv6 = !original.source.address.isIPv4
        original.source.address.write(to: addresses, at: 0)
        original.destination.address.write(to: addresses, at: 16)
        let sequence = self.sequence
        let length = try syscallCompleting("build(conntrack get request)") {
            nfqr_conntrack_get_request(
                buffer.baseAddress, buffer.count, sequence, ipv6 ? 1 : 0, original.proto.rawValue,
                addresses.baseAddress!.assumingMemoryBound(to: UInt8.self),
                (addresses.baseAddress! + 16).assumingMemoryBound(to: UInt8.self), original.source.port, original.destination.port)
        }
        try socket.send(UnsafeRawBufferPointer(start: buffer.baseAddress, count: Int(length)), label: "sendto(conntrack get)")
        var found: ConntrackEvent?
        while true {
            let datagram = try receive(into: buffer, call: "recv(conntrack get)", late: "no answer to a conntrack get within 5 s")
            for message in NetlinkMessages(datagram) where message.sequence == sequence {
                if Int(message.type) == NLMSG_ERROR_TYPE {
                    // The acknowledgement ends the exchange; ENOENT: no such entry.
                    guard let code = message.errorCode, code != 0 else { return found }
                    if code == -ENOENT { return nil }
                    throw .netlink(request: "conntrack get \(original)", errno: Errno(rawValue: -code))
                }
                if case .event(let entry) = ConntrackMessages.read(message, markValue: 0, markMask: 0, dumped: true) {
                    found = entry
                }
            }
        }
    }

    /// One IPCTNL_MSG_CT_GET dump with the kernel's mark filter (CTA_MARK, CTA_MARK_MASK, as
    /// libnetfilter_conntrack's NFCT_FILTER_DUMP_MARK builds them); nil when it was interrupted.
    func run(markValue: UInt32, markMask: UInt32) throws(KernelError) -> [ConntrackEvent]? {
        sequence &+= 1
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 8)
        defer { buffer.deallocate() }
        let length = try syscallCompleting("build(conntrack dump request)") {
            nfqr_conntrack_dump_request(buffer.baseAddress, buffer.count, sequence, markValue, markMask)
        }
        try socket.send(UnsafeRawBufferPointer(start: buffer.baseAddress, count: Int(length)), label: "sendto(conntrack dump)")

        var entries: [ConntrackEvent] = []
        var interrupted = false
        while true {
            let datagram = try receive(into: buffer, call: "recv(conntrack dump)", late: "the conntrack dump did not finish within 5 s")
            if try ConntrackMessages.readDump(
                datagram: datagram, sequence: sequence, markValue: markValue, markMask: markMask, into: &entries, interrupted: &interrupted)
            {
                return interrupted ? nil : entries
            }
        }
    }

    /// One datagram of an answer, within 5 s (`late`: the error then); an overrun (ENOBUFS)
    /// is an error of `call`.
    private func receive(into buffer: UnsafeMutableRawBufferPointer, call: String, late: String) throws(KernelError) -> UnsafeRawBufferPointer {
        guard let result = try socket.receive(into: buffer, timeoutMilliseconds: 5000) else { throw .unexpectedReply(late) }
        guard case .completed(let received) = result else { throw .system(call: call, errno: .noBufferSpace) }
        return UnsafeRawBufferPointer(rebasing: buffer[..<Swift.min(received, buffer.count)])
    }
}

/// The atomic home of a source's counters: the receiving thread adds a receive's totals
/// once per receive, and any thread reads a snapshot.
final class ConntrackCounterCells: Sendable {
    private let received = Atomic<UInt64>(0)
    private let filtered = Atomic<UInt64>(0)
    private let overruns = Atomic<UInt64>(0)
    private let parseErrors = Atomic<UInt64>(0)

    func add(_ delta: ConntrackEventCounters) {
        func add(_ cell: borrowing Atomic<UInt64>, _ value: UInt64) {
            if value != 0 { cell.wrappingAdd(value, ordering: .relaxed) }
        }
        add(received, delta.received)
        add(filtered, delta.filtered)
        add(overruns, delta.overruns)
        add(parseErrors, delta.parseErrors)
    }

    var snapshot: ConntrackEventCounters {
        var counters = ConntrackEventCounters()
        counters.received = received.load(ordering: .relaxed)
        counters.filtered = filtered.load(ordering: .relaxed)
        counters.overruns = overruns.load(ordering: .relaxed)
        counters.parseErrors = parseErrors.load(ordering: .relaxed)
        return counters
    }
}
