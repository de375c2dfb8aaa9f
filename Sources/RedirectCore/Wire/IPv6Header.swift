/// A checked view of an IPv6 packet's fixed header (RFC 8200 3): after `init(checking:)`
/// succeeds, every accessor reads inside `packet` without further checks.
struct IPv6Header {
    static let length = 40
    static let payloadLengthOffset = 4
    static let nextHeaderOffset = 6
    static let sourceOffset = 8
    static let destinationOffset = 24

    /// The fixed header and the payload length's worth of bytes after it.
    let packet: UnsafeRawBufferPointer

    init(checking bytes: UnsafeRawBufferPointer) throws(PacketError) {
        guard bytes.count >= Self.length else { throw .truncated }
        guard bytes[0] >> 4 == 6 else { throw .badVersion }
        let payloadLength = Int(bytes.loadBigEndianUInt16(at: Self.payloadLengthOffset))
        // Payload length 0 with bytes behind it is a jumbogram (RFC 2675) or a BIG TCP packet.
        guard payloadLength != 0 || bytes.count == Self.length else { throw .jumbogram }
        let totalLength = Self.length &+ payloadLength
        guard totalLength <= bytes.count else { throw .truncated }
        packet = UnsafeRawBufferPointer(rebasing: bytes[0..<totalLength])
    }

    /// A header quoted in an ICMPv6 error: `packet` is what the quote holds of the packet (at
    /// least the fixed header), usually less than its payload length says.
    init(quoted packet: UnsafeRawBufferPointer) {
        assert(packet.count >= Self.length)
        self.packet = packet
    }

    var nextHeader: UInt8 { packet[Self.nextHeaderOffset] }

    var source: IPAddress { IPAddress(reading: packet, at: Self.sourceOffset, family: .ipv6) }

    var destination: IPAddress { IPAddress(reading: packet, at: Self.destinationOffset, family: .ipv6) }
}
