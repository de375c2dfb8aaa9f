import CNetfilterQueue

/// The NFQUEUE numbers on the wire, by their names in linux/netfilter/nfnetlink_queue.h and
/// linux/netfilter.h, as the widths the messages carry them in.
package enum NetfilterQueueWire {
    /// nlmsg_type of NFQNL_MSG_PACKET: the nfnetlink subsystem in the high byte, the message in the low one.
    package static let packetMessageType = messageType(NFQNL_MSG_PACKET.rawValue)
    /// nlmsg_type of NFQNL_MSG_VERDICT.
    package static let verdictMessageType = messageType(NFQNL_MSG_VERDICT.rawValue)
    /// nlmsg_type of NFQNL_MSG_VERDICT_BATCH.
    package static let batchVerdictMessageType = messageType(NFQNL_MSG_VERDICT_BATCH.rawValue)
    /// NFQA_VERDICT_HDR: struct nfqnl_msg_verdict_hdr (verdict, id; big-endian).
    package static let verdictHeaderAttribute = UInt16(NFQA_VERDICT_HDR.rawValue)
    /// NFQA_PAYLOAD: the packet, from its IP header on.
    package static let payloadAttribute = UInt16(NFQA_PAYLOAD.rawValue)
    /// NFQA_MARK: in a verdict, the packet's new firewall mark (big-endian u32).
    package static let markAttribute = UInt16(NFQA_MARK.rawValue)
    /// NF_ACCEPT and NF_DROP, the verdicts this daemon gives.
    package static let accept = UInt32(NF_ACCEPT)
    package static let drop = UInt32(NF_DROP)
    /// NLM_F_REQUEST.
    static let requestFlag = UInt16(NLM_F_REQUEST)

    private static func messageType<T: BinaryInteger>(_ message: T) -> UInt16 {
        UInt16(NFNL_SUBSYS_QUEUE) << 8 | UInt16(message)
    }
}
