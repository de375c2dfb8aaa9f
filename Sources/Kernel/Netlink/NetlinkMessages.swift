/// One netlink message inside a received datagram; a view, no copy.
package struct NetlinkMessage {
    static let headerLength = 16

    package var type: UInt16
    var flags: UInt16
    var sequence: UInt32
    var portID: UInt32
    /// The bytes after the 16-byte header, up to nlmsg_len or the end of the datagram.
    package var payload: UnsafeRawBufferPointer
    /// nlmsg_len ran past the datagram (it was cut short by a too small buffer).
    var isTruncated: Bool

    /// For NLMSG_ERROR: the (negative) errno the kernel answered with, 0 for an ACK.
    var errorCode: Int32? {
        guard type == UInt16(NLMSG_ERROR_TYPE), payload.count >= 4 else { return nil }
        return payload.loadUnaligned(as: Int32.self)
    }
}

// Imported macros from linux/netlink.h are not visible without the module; keep the four
// control types this file needs here.
let NLMSG_NOOP_TYPE = 1
let NLMSG_ERROR_TYPE = 2
let NLMSG_DONE_TYPE = 3
let NLMSG_OVERRUN_TYPE = 4

/// Walks the messages of one netlink datagram (netlink(7): each starts at a 4-byte
/// aligned offset and carries its own length). A message whose length is impossible ends
/// the walk: nothing after it can be located.
package struct NetlinkMessages: Sequence, IteratorProtocol {
    private let bytes: UnsafeRawBufferPointer
    private var offset = 0

    package init(_ bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
    }

    package mutating func next() -> NetlinkMessage? {
        let remaining = bytes.count - offset
        guard remaining >= NetlinkMessage.headerLength, let base = bytes.baseAddress else { return nil }
        let start = base + offset
        let length = Int(start.loadUnaligned(as: UInt32.self))
        guard length >= NetlinkMessage.headerLength else {
            offset = bytes.count
            return nil
        }
        let available = Swift.min(length, remaining)
        let message = NetlinkMessage(
            type: start.loadUnaligned(fromByteOffset: 4, as: UInt16.self),
            flags: start.loadUnaligned(fromByteOffset: 6, as: UInt16.self),
            sequence: start.loadUnaligned(fromByteOffset: 8, as: UInt32.self),
            portID: start.loadUnaligned(fromByteOffset: 12, as: UInt32.self),
            payload: UnsafeRawBufferPointer(start: start + NetlinkMessage.headerLength, count: available - NetlinkMessage.headerLength),
            isTruncated: length > remaining)
        let aligned = (length + 3) & ~3
        offset = aligned >= remaining ? bytes.count : offset + aligned
        return message
    }
}
