import Glibc
import Kernel
import RedirectCore
import SystemCalls

/// A packet queue in memory, for testing the datapath without a kernel.
///
/// Tests `enqueue` raw packets with their metadata; `receive` fills the same `PacketBatch`
/// the real queue does (payloads copied into its slots), and `sendVerdicts` runs the real
/// `VerdictWriter` and then plays the kernel's part on the bytes it produced: a verdict takes
/// its id off the queue, a batch verdict takes every queued id up to its own. So `verdicts`
/// shows what the kernel would have done, rewritten bytes included.
/// `receive` blocks like the real one (until something is enqueued, `interrupt()`, or the timeout).
public final class InMemoryPacketQueue: PacketQueue, @unchecked Sendable {
    /// What the "kernel" did with one packet.
    public struct VerdictRecord: Equatable, Sendable {
        public var id: UInt32
        public var verdict: Verdict
        /// The packet as it continues (rewritten or original); empty for a drop.
        public var bytes: [UInt8]
        /// The mark the verdict set (`.acceptMarked`), nil when it set none.
        public var mark: UInt32?

        public init(id: UInt32, verdict: Verdict, bytes: [UInt8], mark: UInt32? = nil) {
            self.id = id
            self.verdict = verdict
            self.bytes = bytes
            self.mark = mark
        }
    }

    /// A packet waiting in the queue, as the kernel would describe it.
    private struct Pending {
        var id: UInt32
        var bytes: [UInt8]
        var hook: NetfilterHook
        var hardwareProtocol: UInt16
        var inputInterface: UInt32
        var outputInterface: UInt32
        var mark: UInt32
        var checksumNotReady: Bool
        var isGSO: Bool
        var packetLength: Int
    }

    private enum Event {
        case packet(Pending)
        /// A message that does not parse; with an id, the packet still needs a verdict.
        case unparsable(id: UInt32?)
        case netlinkError
        case noBufferSpace
    }

    private struct State {
        var events: [Event] = []
        /// Delivered packets awaiting a verdict, in id order (the kernel's queue list).
        var inFlight: [Pending] = []
        var verdicts: [VerdictRecord] = []
        var nextID: UInt32 = 1
        var counters = PacketQueueCounters()
    }

    public let queueNumber: UInt16
    public let batchCapacity: Int
    public let slotSize: Int
    public let unparsablePacketPolicy: UnparsablePacketPolicy
    public let batchVerdicts: Bool
    private let state = Locked(State())
    private let readable: WakeUpChannel
    private let wakeUp: WakeUpChannel
    private let writer: VerdictWriter

    public init(
        queueNumber: UInt16 = 0, batchCapacity: Int = 64, slotSize: Int = 65536,
        unparsablePacketPolicy: UnparsablePacketPolicy = .drop, batchVerdicts: Bool = true
    ) throws(KernelError) {
        guard (1...256).contains(batchCapacity), slotSize > 0 else {
            throw .invalidConfiguration("batch capacity must be 1-256 and slots non-empty")
        }
        self.queueNumber = queueNumber
        self.batchCapacity = batchCapacity
        self.slotSize = slotSize
        self.unparsablePacketPolicy = unparsablePacketPolicy
        self.batchVerdicts = batchVerdicts
        readable = try kernelCall { () throws(SystemCallError) in try WakeUpChannel() }
        wakeUp = try kernelCall { () throws(SystemCallError) in try WakeUpChannel() }
        writer = VerdictWriter(batchCapacity: batchCapacity)
    }

    /// Queues a packet (IP header first) and returns its id. `packetLength` larger than
    /// `bytes.count` makes it a truncated copy, as with NFQA_CAP_LEN.
    @discardableResult
    public func enqueue(
        _ bytes: [UInt8], hook: NetfilterHook = .localOut, inputInterface: UInt32 = 0, outputInterface: UInt32 = 0,
        mark: UInt32 = 0, checksumNotReady: Bool = false, isGSO: Bool = false, packetLength: Int? = nil
    ) -> UInt32 {
        let version = bytes.first.map { $0 >> 4 } ?? 0
        let id = state.withLock { state -> UInt32 in
            let id = state.nextID
            state.nextID &+= 1
            state.events.append(
                .packet(
                    Pending(
                        id: id, bytes: bytes, hook: hook, hardwareProtocol: version == 6 ? 0x86dd : 0x0800,
                        inputInterface: inputInterface, outputInterface: outputInterface, mark: mark,
                        checksumNotReady: checksumNotReady, isGSO: isGSO, packetLength: max(packetLength ?? bytes.count, bytes.count))))
            return id
        }
        readable.signal()
        return id
    }

    /// Queues a message that cannot be parsed; with `hasID`, it names a packet that still
    /// needs the fallback verdict. Returns the id it used, if any.
    @discardableResult
    public func enqueueUnparsableMessage(hasID: Bool) -> UInt32? {
        let id = state.withLock { state -> UInt32? in
            guard hasID else {
                state.events.append(.unparsable(id: nil))
                return nil
            }
            let id = state.nextID
            state.nextID &+= 1
            state.inFlight.append(
                Pending(
                    id: id, bytes: [], hook: .localOut, hardwareProtocol: 0, inputInterface: 0, outputInterface: 0, mark: 0,
                    checksumNotReady: false, isGSO: false, packetLength: 0))
            state.events.append(.unparsable(id: id))
            return id
        }
        readable.signal()
        return id
    }

    /// Makes the next receive see a netlink error message.
    public func enqueueNetlinkError() {
        state.withLock { $0.events.append(.netlinkError) }
        readable.signal()
    }

    /// Makes the next receive see ENOBUFS (messages lost to a full socket buffer).
    public func enqueueNoBufferSpace() {
        state.withLock { $0.events.append(.noBufferSpace) }
        readable.signal()
    }

    /// Everything decided so far, in the order the "kernel" applied it.
    public var verdicts: [VerdictRecord] { state.withLock { $0.verdicts } }

    /// Packets delivered but not yet given a verdict.
    public var awaitingVerdict: Int { state.withLock { $0.inFlight.count } }

    public var counters: PacketQueueCounters { state.withLock { $0.counters } }

    public func makeBatch() -> PacketBatch { PacketBatch(capacity: batchCapacity, slotSize: slotSize) }

    public func interrupt() { wakeUp.signal() }

    public func receive(into batch: PacketBatch, timeoutMilliseconds: Int32) throws(KernelError) -> ReceiveResult {
        guard batch.capacity <= batchCapacity else { throw .invalidConfiguration("a batch must come from the same queue's makeBatch()") }
        batch.removeAll()
        while true {
            let delivered = state.withLock { state -> Bool in
                var taken = 0
                var slot = 0
                var consumed = 0
                var delivered = false
                for event in state.events {
                    guard slot < batch.capacity else { break }
                    consumed += 1
                    switch event {
                    case .noBufferSpace:
                        state.counters.noBufferSpace &+= 1
                        continue
                    case .netlinkError:
                        state.counters.netlinkErrors &+= 1
                    case .unparsable(let id):
                        state.counters.parseErrors &+= 1
                        if let id { _ = batch.appendUnparsed(id: id) }
                    case .packet(let pending):
                        Self.deliver(pending, into: batch, slot: slot)
                        state.inFlight.append(pending)
                        taken += 1
                    }
                    slot += 1
                    delivered = true
                }
                state.events.removeFirst(consumed)
                if taken > 0 {
                    state.counters.received &+= UInt64(taken)
                    state.counters.batches &+= 1
                }
                return delivered
            }
            if delivered { return .received }
            switch try kernelCall({ () throws(SystemCallError) in
                try ReadinessWait.wait(for: readable.descriptor, wakeUp: wakeUp, timeoutMilliseconds: timeoutMilliseconds)
            }) {
            case .readable: readable.drain()
            case .wokenUp: return .interrupted
            case .timedOut: return .timedOut
            }
        }
    }

    private static func deliver(_ pending: Pending, into batch: PacketBatch, slot index: Int) {
        let slot = batch.slot(index)
        let copied = min(pending.bytes.count, slot.count)
        pending.bytes.withUnsafeBytes { source in
            if copied > 0 { slot.baseAddress!.copyMemory(from: source.baseAddress!, byteCount: copied) }
        }
        _ = batch.append(
            QueuedPacket(
                id: pending.id, hardwareProtocol: pending.hardwareProtocol, hook: pending.hook.rawValue,
                inputInterface: pending.inputInterface, outputInterface: pending.outputInterface, mark: pending.mark,
                checksumNotReady: pending.checksumNotReady, isGSO: pending.isGSO,
                packetLength: max(pending.packetLength, pending.bytes.count),
                payload: UnsafeMutableRawBufferPointer(rebasing: slot[..<copied])))
    }

    public func sendVerdicts(for batch: PacketBatch) throws(KernelError) {
        guard batch.capacity <= batchCapacity else { throw .invalidConfiguration("a batch must come from the same queue's makeBatch()") }
        defer { batch.removeAll() }
        var delta = PacketQueueCounters()
        var datagrams: [[UInt8]] = []
        try writer.write(
            batch: batch, queueNumber: queueNumber, unparsedPolicy: unparsablePacketPolicy, useBatchVerdict: batchVerdicts,
            sendLimit: Int.max, counters: &delta
        ) { iovecs, length in
            var datagram: [UInt8] = []
            datagram.reserveCapacity(length)
            for vector in iovecs {
                datagram.append(contentsOf: UnsafeRawBufferPointer(start: vector.iov_base, count: vector.iov_len))
            }
            datagrams.append(datagram)
        }
        state.withLock { state in
            state.counters.acceptedUnmodified &+= delta.acceptedUnmodified
            state.counters.acceptedModified &+= delta.acceptedModified
            state.counters.dropped &+= delta.dropped
            state.counters.acceptedMarked &+= delta.acceptedMarked
            state.counters.rejectedRewrites &+= delta.rejectedRewrites
            state.counters.batchVerdictMessages &+= delta.batchVerdictMessages
            for datagram in datagrams {
                datagram.withUnsafeBytes { Self.applyAsKernel(datagram: $0, to: &state) }
            }
        }
    }

    /// What nfqnl_recv_verdict and nfqnl_recv_verdict_batch do with a datagram of verdicts.
    private static func applyAsKernel(datagram: UnsafeRawBufferPointer, to state: inout State) {
        for message in NetlinkMessages(datagram) {
            guard let decoded = DecodedVerdict(message) else {
                state.counters.netlinkErrors &+= 1
                continue
            }
            if decoded.isBatch {
                // Every queued id up to decoded.id, in queue order (ids are sequential modulo 2^32).
                while let first = state.inFlight.first, Int32(bitPattern: first.id &- decoded.id) <= 0 {
                    state.inFlight.removeFirst()
                    state.verdicts.append(VerdictRecord(id: first.id, verdict: decoded.verdict, bytes: decoded.verdict == .drop ? [] : first.bytes))
                }
            } else if let index = state.inFlight.firstIndex(where: { $0.id == decoded.id }) {
                let pending = state.inFlight.remove(at: index)
                let bytes = decoded.verdict == .drop ? [] : (decoded.payload ?? pending.bytes)
                state.verdicts.append(VerdictRecord(id: pending.id, verdict: decoded.verdict, bytes: bytes, mark: decoded.mark))
            } else {
                state.counters.netlinkErrors &+= 1  // the kernel answers ENOENT
            }
        }
    }
}

/// A verdict message read back from bytes (the fake's view of what the kernel receives).
struct DecodedVerdict {
    var isBatch: Bool
    var verdict: Verdict
    var id: UInt32
    var payload: [UInt8]?
    var mark: UInt32?

    init?(_ message: NetlinkMessage) {
        guard message.type == VerdictWriter.verdictMessageType || message.type == VerdictWriter.batchVerdictMessageType else { return nil }
        isBatch = message.type == VerdictWriter.batchVerdictMessageType
        var offset = PacketMessageParser.familyHeaderLength
        var header: (UInt32, UInt32)? = nil
        let bytes = message.payload
        while offset + 4 <= bytes.count {
            let length = Int(bytes.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
            let type = bytes.loadUnaligned(fromByteOffset: offset + 2, as: UInt16.self)
            guard length >= 4, offset + length <= bytes.count else { return nil }
            if type == NetfilterQueueWire.verdictHeaderAttribute, length == 12 {
                header = (bytes.loadBigEndianUInt32(at: offset + 4), bytes.loadBigEndianUInt32(at: offset + 8))
            } else if type == NetfilterQueueWire.payloadAttribute {
                payload = Array(bytes[(offset + 4)..<(offset + length)])
            } else if type == NetfilterQueueWire.markAttribute, length == 8 {
                mark = bytes.loadBigEndianUInt32(at: offset + 4)
            }
            offset += (length + 3) & ~3
        }
        guard let (code, id) = header else { return nil }
        self.id = id
        switch code {
        case NetfilterQueueWire.drop: verdict = .drop
        case NetfilterQueueWire.accept: verdict = payload != nil ? .acceptModified : mark != nil ? .acceptMarked : .accept
        default: return nil
        }
    }
}
