import RedirectCore

/// Reads ctnetlink conntrack messages (events and dump replies) into `ConntrackEvent`s.
///
/// Parsed here rather than with libnetfilter_conntrack's `nfct_nlmsg_parse`, which exit()s
/// the process on an attribute of unexpected size and allocates for helpers, labels and
/// security contexts: this walk checks every length, allocates nothing, and reads only what
/// the daemon needs. The numbers are the kernel's (include/uapi/linux/netfilter/
/// nfnetlink_conntrack.h), kept here so this file needs no C module.
enum ConntrackMessages {
    /// NFNL_SUBSYS_CTNETLINK, the high byte of a ctnetlink message's type.
    static let subsystem: UInt16 = 1
    /// IPCTNL_MSG_CT_NEW / _GET / _DELETE, the low byte.
    static let newMessage: UInt16 = 0
    static let getMessage: UInt16 = 1
    static let deleteMessage: UInt16 = 2
    /// NLM_F_CREATE | NLM_F_EXCL: what marks a NEW event apart from an UPDATE.
    static let createFlags: UInt16 = 0x400 | 0x200
    /// NLM_F_DUMP_INTR: the table changed while the kernel was dumping it.
    static let dumpInterrupted: UInt16 = 0x10
    /// The nfgenmsg header before the attributes.
    static let familyHeaderLength = 4

    // enum ctattr_type
    private static let tupleOriginal: UInt16 = 1  // CTA_TUPLE_ORIG
    private static let tupleReply: UInt16 = 2  // CTA_TUPLE_REPLY
    private static let statusAttribute: UInt16 = 3  // CTA_STATUS
    private static let protocolInfo: UInt16 = 4  // CTA_PROTOINFO
    private static let timeoutAttribute: UInt16 = 7  // CTA_TIMEOUT
    private static let markAttribute: UInt16 = 8  // CTA_MARK
    private static let idAttribute: UInt16 = 12  // CTA_ID
    // enum ctattr_tuple
    private static let tupleIP: UInt16 = 1  // CTA_TUPLE_IP
    private static let tupleProtocol: UInt16 = 2  // CTA_TUPLE_PROTO
    // enum ctattr_ip
    private static let ipv4Source: UInt16 = 1  // CTA_IP_V4_SRC
    private static let ipv4Destination: UInt16 = 2  // CTA_IP_V4_DST
    private static let ipv6Source: UInt16 = 3  // CTA_IP_V6_SRC
    private static let ipv6Destination: UInt16 = 4  // CTA_IP_V6_DST
    // enum ctattr_l4proto
    private static let protocolNumber: UInt16 = 1  // CTA_PROTO_NUM
    private static let sourcePort: UInt16 = 2  // CTA_PROTO_SRC_PORT
    private static let destinationPort: UInt16 = 3  // CTA_PROTO_DST_PORT
    // enum ctattr_protoinfo, enum ctattr_protoinfo_tcp
    private static let protocolInfoTCP: UInt16 = 1  // CTA_PROTOINFO_TCP
    private static let tcpState: UInt16 = 1  // CTA_PROTOINFO_TCP_STATE

    /// What one message came to.
    enum Outcome: Equatable {
        case event(ConntrackEvent)
        /// Not an entry the caller asked for: another protocol (ICMP, SCTP, ...), a mark
        /// outside the filter, or not a conntrack message at all.
        case filtered
        /// Truncated, an attribute running past its container, or a tuple missing.
        case malformed
    }

    /// Reads one message. Dump replies (`dumped`) are `.update`s whatever their flags.
    /// `negated`: the caller wants the entries whose `mark & markMask != markValue`.
    static func read(_ message: NetlinkMessage, markValue: UInt32, markMask: UInt32, negated: Bool = false, dumped: Bool = false) -> Outcome {
        guard message.type >> 8 == subsystem else { return .filtered }
        let kind: ConntrackEvent.Kind
        switch message.type & 0xff {
        case newMessage: kind = dumped || message.flags & createFlags == 0 ? .update : .new
        case deleteMessage: kind = .destroy
        default: return .filtered
        }
        guard !message.isTruncated, message.payload.count >= familyHeaderLength else { return .malformed }
        let attributes = UnsafeRawBufferPointer(rebasing: message.payload[familyHeaderLength...])

        var original: RawTuple?
        var reply: RawTuple?
        var state: UInt8?
        var mark: UInt32 = 0
        var status: UInt32 = 0
        var id: UInt32 = 0
        var timeout: UInt32?
        var walk = AttributeWalk(attributes)
        while let (type, value) = walk.next() {
            switch type {
            case tupleOriginal, tupleReply:
                guard let tuple = RawTuple(value) else { return .malformed }
                if type == tupleOriginal { original = tuple } else { reply = tuple }
            case statusAttribute, markAttribute, timeoutAttribute, idAttribute:
                // Each a big-endian u32.
                guard value.count == 4 else { return .malformed }
                let number = value.loadBigEndianUInt32(at: 0)
                switch type {
                case statusAttribute: status = number
                case markAttribute: mark = number
                case timeoutAttribute: timeout = number
                default: id = number
                }
            case protocolInfo:
                guard let found = tcpState(in: value) else { return .malformed }
                state = found
            default:
                continue
            }
        }
        guard !walk.isMalformed, let original, let reply else { return .malformed }
        guard original.protocolNumber == reply.protocolNumber, let proto = TransportProtocol(rawValue: original.protocolNumber) else {
            return .filtered
        }
        guard (mark & markMask == markValue) != negated else { return .filtered }
        guard let originalTuple = original.tuple(proto), let replyTuple = reply.tuple(proto) else { return .malformed }
        let tcpState = proto == .tcp ? state.flatMap(ConntrackTCPState.init(rawValue:)) : nil
        return .event(
            ConntrackEvent(
                kind: kind, original: originalTuple, reply: replyTuple, tcpState: tcpState, mark: mark,
                status: ConntrackStatus(rawValue: status), id: id, timeout: timeout))
    }

    /// Appends the entries of one datagram of a dump (replies to `sequence` only) and sets
    /// `interrupted` when the kernel flags one (NLM_F_DUMP_INTR: the table changed meanwhile).
    /// True once NLMSG_DONE arrived. A message that does not read is an error, not a skip: a
    /// dump that silently missed an entry would hide a flow from the caller.
    static func readDump(
        datagram: UnsafeRawBufferPointer, sequence: UInt32, markValue: UInt32, markMask: UInt32, into entries: inout [ConntrackEvent],
        interrupted: inout Bool
    ) throws(KernelError) -> Bool {
        for message in NetlinkMessages(datagram) where message.sequence == sequence {
            if message.flags & dumpInterrupted != 0 { interrupted = true }
            switch Int(message.type) {
            case NLMSG_DONE_TYPE:
                return true
            case NLMSG_ERROR_TYPE:
                if let code = message.errorCode, code != 0 {
                    throw .netlink(
                        request: "conntrack dump (mark 0x\(String(markValue, radix: 16))/0x\(String(markMask, radix: 16)))",
                        errno: Errno(rawValue: -code))
                }
            default:
                switch read(message, markValue: markValue, markMask: markMask, dumped: true) {
                case .event(let entry): entries.append(entry)
                case .filtered: continue
                case .malformed: throw .unexpectedReply("a conntrack dump entry that does not parse (\(message.payload.count) bytes)")
                }
            }
        }
        return false
    }

    /// CTA_PROTOINFO: the TCP state when there is one (0xff: none), nil when malformed.
    private static func tcpState(in protocolInfo: UnsafeRawBufferPointer) -> UInt8? {
        var state: UInt8 = 0xff
        var walk = AttributeWalk(protocolInfo)
        while let (type, value) = walk.next() {
            guard type == protocolInfoTCP else { continue }
            var inner = AttributeWalk(value)
            while let (innerType, innerValue) = inner.next() {
                guard innerType == tcpState else { continue }
                guard innerValue.count == 1 else { return nil }
                state = innerValue[0]
            }
            if inner.isMalformed { return nil }
        }
        return walk.isMalformed ? nil : state
    }

    /// A CTA_TUPLE_* nest as read: the protocol number, and the addresses and ports when present.
    private struct RawTuple {
        var protocolNumber: UInt8 = 0
        var source: IPAddress?
        var destination: IPAddress?
        var sourcePort: UInt16?
        var destinationPort: UInt16?

        /// Nil when an attribute is malformed or the protocol number is missing.
        init?(_ nest: UnsafeRawBufferPointer) {
            var hasProtocol = false
            var walk = AttributeWalk(nest)
            while let (type, value) = walk.next() {
                switch type {
                case ConntrackMessages.tupleIP:
                    var inner = AttributeWalk(value)
                    while let (ipType, address) = inner.next() {
                        switch ipType {
                        case ConntrackMessages.ipv4Source, ConntrackMessages.ipv4Destination:
                            guard address.count == 4 else { return nil }
                            let parsed = IPAddress(reading: address, at: 0, family: .ipv4)
                            if ipType == ConntrackMessages.ipv4Source { source = parsed } else { destination = parsed }
                        case ConntrackMessages.ipv6Source, ConntrackMessages.ipv6Destination:
                            guard address.count == 16 else { return nil }
                            let parsed = IPAddress(reading: address, at: 0, family: .ipv6)
                            if ipType == ConntrackMessages.ipv6Source { source = parsed } else { destination = parsed }
                        default:
                            continue
                        }
                    }
                    if inner.isMalformed { return nil }
                case ConntrackMessages.tupleProtocol:
                    var inner = AttributeWalk(value)
                    while let (protoType, field) = inner.next() {
                        switch protoType {
                        case ConntrackMessages.protocolNumber:
                            guard field.count == 1 else { return nil }
                            protocolNumber = field[0]
                            hasProtocol = true
                        case ConntrackMessages.sourcePort, ConntrackMessages.destinationPort:
                            guard field.count == 2 else { return nil }
                            let port = field.loadBigEndianUInt16(at: 0)
                            if protoType == ConntrackMessages.sourcePort { sourcePort = port } else { destinationPort = port }
                        default:
                            continue
                        }
                    }
                    if inner.isMalformed { return nil }
                default:
                    continue
                }
            }
            if walk.isMalformed || !hasProtocol { return nil }
        }

        /// The tuple, when both addresses and both ports are there.
        func tuple(_ proto: TransportProtocol) -> FlowTuple? {
            guard let source, let destination, let sourcePort, let destinationPort, source.isIPv4 == destination.isIPv4 else { return nil }
            return FlowTuple(proto: proto, source: Endpoint(source, sourcePort), destination: Endpoint(destination, destinationPort))
        }
    }
}

/// Walks the netlink attributes of one level (netlink(7): a 4-byte header, nla_len then
/// nla_type, the value, padding to 4 bytes). An attribute whose length is impossible ends
/// the walk and sets `isMalformed`. Types are returned without NLA_F_NESTED / NLA_F_NET_BYTEORDER.
struct AttributeWalk {
    private let bytes: UnsafeRawBufferPointer
    private var offset = 0
    private(set) var isMalformed = false

    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    mutating func next() -> (type: UInt16, value: UnsafeRawBufferPointer)? {
        let remaining = bytes.count - offset
        guard remaining >= 4 else {
            if remaining != 0 { isMalformed = true }
            return nil
        }
        let length = Int(bytes.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
        let type = bytes.loadUnaligned(fromByteOffset: offset + 2, as: UInt16.self) & 0x3fff
        guard length >= 4, length <= remaining else {
            isMalformed = true
            offset = bytes.count
            return nil
        }
        let value = UnsafeRawBufferPointer(rebasing: bytes[(offset + 4)..<(offset + length)])
        offset = Swift.min(offset + ((length + 3) & ~3), bytes.count)
        return (type, value)
    }
}
