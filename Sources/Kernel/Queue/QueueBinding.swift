import CNetfilterQueue
import CNetlinkAttributes
import Glibc
import RedirectCore
import SystemCalls

/// The configuration exchange that binds a queue: BIND, copy mode, queue length and flags,
/// sent in one datagram, each message acknowledged.
enum QueueBinding {
    /// `alreadyBound`: the socket is one a previous process bound (adopted); only the copy
    /// mode, length and flags are sent, which the kernel takes from the socket holding the queue.
    static func bind(socket: NetlinkSocket, configuration: NetfilterQueueConfiguration, alreadyBound: Bool = false) throws(KernelError) {
        let queue = configuration.queueNumber
        let bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: 512, alignment: 8)
        defer { bytes.deallocate() }
        bytes.initializeMemory(as: UInt8.self, repeating: 0)
        var offset = 0
        do {
            func message(sequence: UInt32, fill: (UnsafeMutablePointer<nlmsghdr>) -> Void) {
                let base = bytes.baseAddress!.advanced(by: offset).assumingMemoryBound(to: CChar.self)
                let header = nfq_nlmsg_put(base, Int32(NFQNL_MSG_CONFIG.rawValue), UInt32(queue))!
                fill(header)
                header.pointee.nlmsg_flags |= UInt16(NLM_F_ACK)
                header.pointee.nlmsg_seq = sequence
                offset += (Int(header.pointee.nlmsg_len) + 3) & ~3
            }
            if !alreadyBound {
                message(sequence: 1) { nfq_nlmsg_cfg_put_cmd($0, UInt16(AF_UNSPEC), UInt8(NFQNL_CFG_CMD_BIND.rawValue)) }
            }
            message(sequence: 2) {
                nfq_nlmsg_cfg_put_params($0, UInt8(NFQNL_COPY_PACKET.rawValue), Int32(configuration.copyRange))
            }
            message(sequence: 3) { nfq_nlmsg_cfg_put_qmaxlen($0, configuration.maximumQueueLength) }
            message(sequence: 4) {
                var flags: UInt32 = 0
                if configuration.failOpen { flags |= UInt32(NFQA_CFG_F_FAIL_OPEN) }
                if configuration.segmentationOffload { flags |= UInt32(NFQA_CFG_F_GSO) }
                mnl_attr_put_u32($0, UInt16(NFQA_CFG_FLAGS.rawValue), flags.bigEndian)
                mnl_attr_put_u32($0, UInt16(NFQA_CFG_MASK.rawValue), UInt32(NFQA_CFG_F_FAIL_OPEN | NFQA_CFG_F_GSO).bigEndian)
            }
        }
        try socket.send(UnsafeRawBufferPointer(rebasing: bytes[..<offset]), label: "sendto(NFQUEUE \(queue) configuration)")
        try awaitAcknowledgements(socket: socket, configuration: configuration, first: alreadyBound ? 2 : 1, last: 4)
    }

    /// The last packet id the kernel gave out on `queue` (/proc's id_sequence), 0 if unknown.
    static func lastPacketID(queue: UInt16) -> UInt32 {
        ((try? NetfilterQueueKernelStatistics.read()) ?? []).first { $0.queueNumber == queue }?.idSequence ?? 0
    }

    /// After adopting a socket: every packet of the queue with an id up to `upTo` (read before
    /// the configuration exchange, whose acknowledgement loop sent back the ones still waiting
    /// in the socket) was taken by the previous process and never answered. One batch verdict
    /// NF_REPEAT sends them through the rules again, queued anew for us. Returns whether there
    /// were any (the kernel answers ENOENT when none is left).
    static func releaseOrphans(socket: NetlinkSocket, queue: UInt16, upTo lastID: UInt32) throws(KernelError) -> Bool {
        guard lastID > 0 else { return false }
        var verdict = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        try withUnsafeMutableBytes(of: &verdict) { (bytes) throws(KernelError) in
            VerdictWriter.encodeHeader(
                into: bytes, type: VerdictWriter.batchVerdictMessageType, queue: queue, verdict: UInt32(NF_REPEAT), id: lastID, payloadLength: nil)
            // NLM_F_REQUEST | NLM_F_ACK, sequence 5
            bytes.storeBytes(of: UInt16(1 | NLM_F_ACK), toByteOffset: 6, as: UInt16.self)
            bytes.storeBytes(of: UInt32(5), toByteOffset: 8, as: UInt32.self)
            try socket.send(UnsafeRawBufferPointer(bytes), label: "sendto(NFQUEUE \(queue) repeat orphans)")
        }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 256 * 1024, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            guard let result = try socket.receive(into: buffer, timeoutMilliseconds: 5000) else {
                throw .unexpectedReply("no acknowledgement for NFQUEUE \(queue) orphan verdict within 5 s")
            }
            guard case .completed(let length) = result else { continue }
            for message in NetlinkMessages(UnsafeRawBufferPointer(rebasing: buffer[..<length])) {
                if let code = message.errorCode, message.sequence == 5 {
                    if code == 0 { return true }
                    if -code == ENOENT { return false }
                    throw .netlink(request: "repeating orphaned packets of NFQUEUE \(queue)", errno: Errno(rawValue: -code))
                } else if message.type == PacketMessageParser.packetMessageType {
                    try repeatPacket(message, socket: socket, queue: queue)
                }
            }
        }
    }

    private static func describe(_ sequence: UInt32, queue: UInt16) -> String {
        switch sequence {
        case 1: "binding NFQUEUE \(queue) (EPERM: another program is bound to it, or CAP_NET_ADMIN is missing)"
        case 2: "setting copy-packet mode on NFQUEUE \(queue)"
        case 3: "setting the length of NFQUEUE \(queue)"
        default: "setting the flags (fail-open, GSO) of NFQUEUE \(queue)"
        }
    }

    /// Reads until every configuration message is acknowledged. A packet can arrive between
    /// BIND and the copy-mode change: it is handed back with NF_REPEAT, so the kernel runs the
    /// rule again and queues it anew, now with its payload.
    private static func awaitAcknowledgements(
        socket: NetlinkSocket, configuration: NetfilterQueueConfiguration, first: UInt32, last: UInt32
    ) throws(KernelError) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: configuration.slotSize, alignment: 16)
        defer { buffer.deallocate() }
        var acknowledged: UInt32 = 0
        let count = last - first + 1
        while acknowledged < count {
            guard let result = try socket.receive(into: buffer, timeoutMilliseconds: 5000) else {
                throw .unexpectedReply("no acknowledgement for NFQUEUE \(configuration.queueNumber) configuration within 5 s")
            }
            guard case .completed(let length) = result else { continue }
            for message in NetlinkMessages(UnsafeRawBufferPointer(rebasing: buffer[..<length])) {
                if let code = message.errorCode, (first...last).contains(message.sequence) {
                    if code != 0 {
                        throw .netlink(request: describe(message.sequence, queue: configuration.queueNumber), errno: Errno(rawValue: -code))
                    }
                    acknowledged += 1
                } else if message.type == PacketMessageParser.packetMessageType {
                    try repeatPacket(message, socket: socket, queue: configuration.queueNumber)
                }
            }
        }
    }

    private static func repeatPacket(_ message: NetlinkMessage, socket: NetlinkSocket, queue: UInt16) throws(KernelError) {
        guard message.payload.count > PacketMessageParser.familyHeaderLength, let base = message.payload.baseAddress else { return }
        var fields = nfqr_packet_fields()
        _ = nfqr_parse_packet_attributes(base + 4, message.payload.count - 4, &fields)
        guard fields.has_packet_header != 0 else { return }
        var verdict = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        try withUnsafeMutableBytes(of: &verdict) { (bytes) throws(KernelError) in
            VerdictWriter.encodeHeader(
                into: bytes, type: VerdictWriter.verdictMessageType, queue: queue, verdict: UInt32(NF_REPEAT), id: fields.packet_id,
                payloadLength: nil)
            try socket.send(UnsafeRawBufferPointer(bytes), label: "sendto(NFQUEUE \(queue) repeat verdict)")
        }
    }
}
