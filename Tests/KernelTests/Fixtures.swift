/// Builders of netlink byte fixtures. Kept deliberately literal (explicit lengths and byte
/// orders) so the tests check the parsers against the wire format, not against themselves.
enum Fixture {
    static func u16(_ value: UInt16) -> [UInt8] { withUnsafeBytes(of: value.littleEndian, Array.init) }
    static func u32(_ value: UInt32) -> [UInt8] { withUnsafeBytes(of: value.littleEndian, Array.init) }
    static func be16(_ value: UInt16) -> [UInt8] { [UInt8(value >> 8), UInt8(value & 0xff)] }
    static func be32(_ value: UInt32) -> [UInt8] {
        [UInt8(value >> 24), UInt8((value >> 16) & 0xff), UInt8((value >> 8) & 0xff), UInt8(value & 0xff)]
    }

    /// An attribute: nla_len (header + data, unpadded), nla_type, data, padding to 4.
    static func attribute(_ type: UInt16, _ data: [UInt8]) -> [UInt8] {
        u16(UInt16(4 + data.count)) + u16(type) + data + [UInt8](repeating: 0, count: (4 - data.count % 4) % 4)
    }

    /// A netlink message: nlmsghdr (host order) and body; nlmsg_len covers the body.
    static func message(type: UInt16, flags: UInt16 = 0, sequence: UInt32 = 0, _ body: [UInt8]) -> [UInt8] {
        u32(UInt32(16 + body.count)) + u16(type) + u16(flags) + u32(sequence) + u32(0) + body
    }

    /// nfgenmsg: family, version, queue number big-endian.
    static func nfgen(queue: UInt16) -> [UInt8] { [2, 0] + be16(queue) }

    /// An NFQNL_MSG_PACKET message like the kernel's (packet header first).
    static func packetMessage(
        id: UInt32, hook: UInt8 = 3, mark: UInt32? = nil, inputInterface: UInt32? = nil, skbInfo: UInt32? = nil,
        capturedLength: UInt32? = nil, payload: [UInt8]? = [0x45, 0, 0, 20]
    ) -> [UInt8] {
        var body = nfgen(queue: 5) + attribute(1, be32(id) + be16(0x0800) + [hook])
        if let mark { body += attribute(3, be32(mark)) }
        if let inputInterface { body += attribute(5, be32(inputInterface)) }
        if let skbInfo { body += attribute(14, be32(skbInfo)) }
        if let capturedLength { body += attribute(13, be32(capturedLength)) }
        if let payload { body += attribute(10, payload) }
        return message(type: 0x0300, body)
    }

    /// NLMSG_ERROR carrying `error` (negative errno, 0 for an ACK) and the request's header.
    static func error(_ error: Int32, sequence: UInt32 = 0) -> [UInt8] {
        message(type: 2, sequence: sequence, u32(UInt32(bitPattern: error)) + message(type: 0x0301, []))
    }
}
