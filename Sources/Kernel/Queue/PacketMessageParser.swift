import CNetlinkAttributes

/// Turns received NFQUEUE datagrams into the batch's packets, counting what it cannot use.
package enum PacketMessageParser {
    static let packetMessageType = NetfilterQueueWire.packetMessageType
    /// struct nfgenmsg, before the attributes.
    package static let familyHeaderLength = 4

    /// Parses every message of one datagram. `truncated` is the datagram's MSG_TRUNC flag.
    static func parse(
        datagram: UnsafeMutableRawBufferPointer, truncated: Bool, into batch: PacketBatch, counters: inout PacketQueueCounters
    ) {
        for message in NetlinkMessages(UnsafeRawBufferPointer(datagram)) {
            switch Int(message.type) {
            case NLMSG_ERROR_TYPE:
                // An ACK (error 0) is harmless; a non-zero error is usually a verdict the kernel
                // rejected (an id it no longer has): counted, never fatal.
                if message.errorCode != 0 { counters.netlinkErrors &+= 1 }
            case NLMSG_NOOP_TYPE, NLMSG_DONE_TYPE:
                break
            default:
                if message.type == packetMessageType {
                    parsePacket(message, truncated: truncated || message.isTruncated, into: batch, counters: &counters)
                } else {
                    counters.parseErrors &+= 1
                }
            }
        }
    }

    private static func parsePacket(_ message: NetlinkMessage, truncated: Bool, into batch: PacketBatch, counters: inout PacketQueueCounters) {
        guard message.payload.count >= familyHeaderLength, let base = message.payload.baseAddress else {
            counters.parseErrors &+= 1
            return
        }
        var fields = nfqr_packet_fields()
        let status = nfqr_parse_packet_attributes(base + familyHeaderLength, message.payload.count - familyHeaderLength, &fields)
        guard status == NFQR_PARSE_OK, !truncated, let payload = fields.payload else {
            counters.parseErrors &+= 1
            if fields.has_packet_header != 0 {
                // Without room the packet stays queued until a later batch verdict covers it.
                _ = batch.appendUnparsed(id: fields.packet_id)
            }
            return
        }
        let length = Int(fields.payload_length)
        let packet = QueuedPacket(
            id: fields.packet_id,
            hardwareProtocol: fields.hw_protocol,
            hook: fields.hook,
            inputInterface: fields.input_interface,
            outputInterface: fields.output_interface,
            mark: fields.mark,
            checksumNotReady: fields.skb_info & UInt32(NFQA_SKB_CSUMNOTREADY_FLAG) != 0,
            isGSO: fields.skb_info & UInt32(NFQA_SKB_GSO_FLAG) != 0,
            packetLength: max(length, Int(fields.captured_length)),
            // The datagram buffer is the batch's own mutable slot: the engine rewrites it in place.
            payload: UnsafeMutableRawBufferPointer(start: UnsafeMutableRawPointer(mutating: payload), count: length))
        if !batch.append(packet) {
            counters.parseErrors &+= 1
            _ = batch.appendUnparsed(id: fields.packet_id)
        }
    }
}

// From linux/netfilter/nfnetlink_queue.h (NFQA_SKB_INFO flags).
let NFQA_SKB_CSUMNOTREADY_FLAG = 1 << 0
let NFQA_SKB_GSO_FLAG = 1 << 1
