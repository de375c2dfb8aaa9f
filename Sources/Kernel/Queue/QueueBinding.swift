import RedirectCore
import CNetlinkAttributes
import CNetfilterQueue
import Glibc
import SystemCalls

/// The configuration exchange that binds a queue: BIND, copy mode, queue length and flags,
/// sent in one datagram, each message acknowledged.
enum QueueBinding {
    static func bind(socket: NetlinkSocket, configuration: NetfilterQueueConfiguration) throws(KernelError) {
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
            message(sequence: 1) { nfq_nlmsg_cfg_put_cmd($0, UInt16(AF_UNSPEC), UInt8(NFQNL_CFG_CMD_BIND.rawValue)) }
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
        try awaitAcknowledgements(socket: socket, configuration: configuration, count: 4)
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
    private static func awaitAcknowledgements(socket: NetlinkSocket, configuration: NetfilterQueueConfiguration, count: UInt32) throws(KernelError) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: configuration.slotSize, alignment: 16)
        defer { buffer.deallocate() }
        var acknowledged: UInt32 = 0
        while acknowledged < count {
            guard let result = try socket.receive(into: buffer, timeoutMilliseconds: 5000) else {
                throw .unexpectedReply("no acknowledgement for NFQUEUE \(configuration.queueNumber) configuration within 5 s")
            }
            guard case .completed(let length) = result else { continue }
            for message in NetlinkMessages(UnsafeRawBufferPointer(rebasing: buffer[..<length])) {
                if let code = message.errorCode, (1...count).contains(message.sequence) {
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
            VerdictWriter.encodeHeader(into: bytes, type: VerdictWriter.verdictMessageType, queue: queue, verdict: UInt32(NF_REPEAT), id: fields.packet_id, payloadLength: nil)
            try socket.send(UnsafeRawBufferPointer(bytes), label: "sendto(NFQUEUE \(queue) repeat verdict)")
        }
    }
}
