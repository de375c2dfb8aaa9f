import Glibc
import RedirectCore

/// Builds the verdict messages of a batch into preallocated headers and iovecs and hands
/// them to `send` in as few datagrams as the send limit allows (normally one).
///
/// Layout of one verdict (what nfq_nlmsg_put + nfq_nlmsg_verdict_put[_pkt] produce):
/// nlmsghdr(16) nfgenmsg(4) NFQA_VERDICT_HDR(4+8) [NFQA_PAYLOAD(4) payload pad] or
/// [NFQA_MARK(4+4)] (kernel-nat mode's marked accept).
/// The payload is not copied: its iovec points at the packet in the receive buffer.
///
/// Order: drops, rewritten accepts and fallback verdicts one message each, then ONE
/// NFQNL_MSG_VERDICT_BATCH accept naming the last unmodified accept. The kernel answers a
/// batch verdict for every packet still queued up to that id; the per-packet verdicts before
/// it have already taken theirs off the queue, so it covers exactly the unmodified accepts.
///
/// Why unsafe: headers and iovecs live in memory allocated once per queue so the verdict
/// path allocates nothing; all offsets are computed from the constants below.
package final class VerdictWriter {
    package static let verdictMessageType = NetfilterQueueWire.verdictMessageType
    package static let batchVerdictMessageType = NetfilterQueueWire.batchVerdictMessageType
    static let verdictHeaderLength = 32
    static let payloadAttributeHeaderLength = 4
    static let markAttributeLength = 8
    /// nla_len is 16 bits: 65535 - 4 bytes of attribute header.
    static let maximumPayloadLength = 65531
    private static let headerStride = 40
    private static let accept = NetfilterQueueWire.accept
    private static let drop = NetfilterQueueWire.drop

    let capacity: Int
    private let headers: UnsafeMutableRawPointer
    private let iovecs: UnsafeMutablePointer<iovec>
    private let padding: UnsafeMutableRawPointer

    /// Room for the verdicts of one batch of `batchCapacity` slots: a verdict per packet plus one
    /// per unparsed id, each list holding up to `batchCapacity` (a datagram may carry more
    /// messages than the batch has slots), plus the batch verdict.
    package init(batchCapacity: Int) {
        capacity = 2 * batchCapacity
        headers = .allocate(byteCount: (capacity + 1) * Self.headerStride, alignment: 8)
        iovecs = .allocate(capacity: capacity * 3 + 1)
        padding = .allocate(byteCount: 4, alignment: 4)
        padding.initializeMemory(as: UInt8.self, repeating: 0, count: 4)
    }

    deinit {
        headers.deallocate()
        iovecs.deallocate()
        padding.deallocate()
    }

    /// Writes the batch's verdicts and calls `send` with each datagram's iovecs (never more
    /// than `sendLimit` bytes unless one message alone is larger). Counts verdict kinds.
    package func write(
        batch: PacketBatch, queueNumber: UInt16, unparsedPolicy: UnparsablePacketPolicy, useBatchVerdict: Bool,
        sendLimit: Int, counters: inout PacketQueueCounters,
        send: (UnsafeMutableBufferPointer<iovec>, Int) throws(KernelError) -> Void
    ) throws(KernelError) {
        precondition(batch.count + batch.unparsedCount <= capacity, "batch larger than the verdict writer")
        var state = ChunkState()
        var lastPlainAccept: UInt32? = nil
        var plainAccepts = 0
        var header = 0

        for index in 0..<batch.count {
            let packet = batch.packets[index]
            var verdict = packet.verdict
            if verdict == .acceptModified && (packet.isTruncated || packet.payload.count > Self.maximumPayloadLength) {
                counters.rejectedRewrites &+= 1
                verdict = .drop
            }
            switch verdict {
            case .accept:
                counters.acceptedUnmodified &+= 1
                if useBatchVerdict {
                    lastPlainAccept = packet.id
                    plainAccepts += 1
                    continue
                }
                try append(
                    header: header, type: Self.verdictMessageType, queue: queueNumber, verdict: Self.accept, id: packet.id, payload: nil,
                    state: &state, sendLimit: sendLimit, send: send)
            case .acceptModified:
                counters.acceptedModified &+= 1
                try append(
                    header: header, type: Self.verdictMessageType, queue: queueNumber, verdict: Self.accept, id: packet.id,
                    payload: UnsafeRawBufferPointer(packet.payload), state: &state, sendLimit: sendLimit, send: send)
            case .acceptMarked:
                counters.acceptedMarked &+= 1
                try append(
                    header: header, type: Self.verdictMessageType, queue: queueNumber, verdict: Self.accept, id: packet.id,
                    payload: nil, mark: packet.mark, state: &state, sendLimit: sendLimit, send: send)
            case .drop:
                counters.dropped &+= 1
                try append(
                    header: header, type: Self.verdictMessageType, queue: queueNumber, verdict: Self.drop, id: packet.id, payload: nil, state: &state,
                    sendLimit: sendLimit, send: send)
            }
            header += 1
        }
        for index in 0..<batch.unparsedCount {
            let verdict = unparsedPolicy == .accept ? Self.accept : Self.drop
            try append(
                header: header, type: Self.verdictMessageType, queue: queueNumber, verdict: verdict, id: batch.unparsedIDs[index], payload: nil,
                state: &state, sendLimit: sendLimit, send: send)
            header += 1
        }
        if let lastPlainAccept {
            // A single unmodified accept is sent as a plain verdict: same size, no batch semantics.
            let type = plainAccepts > 1 ? Self.batchVerdictMessageType : Self.verdictMessageType
            if plainAccepts > 1 { counters.batchVerdictMessages &+= 1 }
            try append(
                header: header, type: type, queue: queueNumber, verdict: Self.accept, id: lastPlainAccept, payload: nil, state: &state,
                sendLimit: sendLimit, send: send)
        }
        if state.iovecCount > 0 {
            try send(UnsafeMutableBufferPointer(start: iovecs, count: state.iovecCount), state.bytes)
        }
    }

    private struct ChunkState {
        var iovecCount = 0
        var bytes = 0
    }

    private func append(
        header index: Int, type: UInt16, queue: UInt16, verdict: UInt32, id: UInt32, payload: UnsafeRawBufferPointer?,
        mark: UInt32? = nil, state: inout ChunkState, sendLimit: Int, send: (UnsafeMutableBufferPointer<iovec>, Int) throws(KernelError) -> Void
    ) throws(KernelError) {
        let payloadLength = payload?.count ?? 0
        let headerLength =
            Self.verdictHeaderLength + (payload == nil ? 0 : Self.payloadAttributeHeaderLength) + (mark == nil ? 0 : Self.markAttributeLength)
        let paddingLength = (4 - payloadLength & 3) & 3
        let messageLength = headerLength + payloadLength + paddingLength
        if state.bytes > 0 && state.bytes + messageLength > sendLimit {
            try send(UnsafeMutableBufferPointer(start: iovecs, count: state.iovecCount), state.bytes)
            state = ChunkState()
        }
        let bytes = UnsafeMutableRawBufferPointer(start: headers + index * Self.headerStride, count: headerLength)
        Self.encodeHeader(
            into: bytes, type: type, queue: queue, verdict: verdict, id: id, payloadLength: payload == nil ? nil : payloadLength, mark: mark)
        iovecs[state.iovecCount] = iovec(iov_base: bytes.baseAddress, iov_len: headerLength)
        state.iovecCount += 1
        if let payload, payloadLength > 0 {
            iovecs[state.iovecCount] = iovec(iov_base: UnsafeMutableRawPointer(mutating: payload.baseAddress), iov_len: payloadLength)
            state.iovecCount += 1
        }
        if paddingLength > 0 {
            iovecs[state.iovecCount] = iovec(iov_base: padding, iov_len: paddingLength)
            state.iovecCount += 1
        }
        state.bytes += messageLength
    }

    /// Writes a verdict message's headers. With `payloadLength`, also the NFQA_PAYLOAD
    /// attribute header, and nlmsg_len covers the payload and its padding (as libmnl does).
    /// With `mark` (and no payload), the NFQA_MARK attribute.
    static func encodeHeader(
        into bytes: UnsafeMutableRawBufferPointer, type: UInt16, queue: UInt16, verdict: UInt32, id: UInt32, payloadLength: Int?,
        mark: UInt32? = nil
    ) {
        var messageLength = verdictHeaderLength
        if mark != nil { messageLength += markAttributeLength }
        if let payloadLength { messageLength += payloadAttributeHeaderLength + (payloadLength + 3) & ~3 }
        // nlmsghdr, host order
        bytes.storeBytes(of: UInt32(messageLength), toByteOffset: 0, as: UInt32.self)
        bytes.storeBytes(of: type, toByteOffset: 4, as: UInt16.self)
        bytes.storeBytes(of: NetfilterQueueWire.requestFlag, toByteOffset: 6, as: UInt16.self)
        bytes.storeBytes(of: 0, toByteOffset: 8, as: UInt32.self)
        bytes.storeBytes(of: 0, toByteOffset: 12, as: UInt32.self)
        // nfgenmsg: AF_UNSPEC, NFNETLINK_V0, queue number big-endian
        bytes.storeBytes(of: 0, toByteOffset: 16, as: UInt16.self)
        bytes.storeBigEndian(queue, at: 18)
        // NFQA_VERDICT_HDR: verdict and id big-endian
        bytes.storeBytes(of: 12, toByteOffset: 20, as: UInt16.self)
        bytes.storeBytes(of: NetfilterQueueWire.verdictHeaderAttribute, toByteOffset: 22, as: UInt16.self)
        bytes.storeBigEndian(verdict, at: 24)
        bytes.storeBigEndian(id, at: 28)
        if let payloadLength {
            // NFQA_PAYLOAD; nla_len counts the data without padding
            bytes.storeBytes(of: UInt16(truncatingIfNeeded: 4 + payloadLength), toByteOffset: 32, as: UInt16.self)
            bytes.storeBytes(of: NetfilterQueueWire.payloadAttribute, toByteOffset: 34, as: UInt16.self)
        } else if let mark {
            bytes.storeBytes(of: UInt16(markAttributeLength), toByteOffset: 32, as: UInt16.self)
            bytes.storeBytes(of: NetfilterQueueWire.markAttribute, toByteOffset: 34, as: UInt16.self)
            bytes.storeBigEndian(mark, at: 36)
        }
    }
}
