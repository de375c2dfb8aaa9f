/// A checked view of an IPv4 packet (RFC 791): after `init(checking:)` succeeds, every
/// accessor reads inside `packet` without further checks.
struct IPv4Header {
    static let minimumLength = 20
    static let totalLengthOffset = 2
    static let fragmentOffset = 6
    static let protocolOffset = 9
    static let checksumOffset = 10
    static let sourceOffset = 12
    static let destinationOffset = 16

    /// The packet as its total length gives it; bytes after that are not part of the view.
    let packet: UnsafeRawBufferPointer

    /// Checks version, IHL (options included) and total length against the buffer. The header
    /// checksum is not checked: the kernel verified it before the hooks (ip_rcv_core) or
    /// computed it (__ip_local_out), and the rewriter recomputes it in full anyway.
    init(checking bytes: UnsafeRawBufferPointer) throws(PacketError) {
        guard bytes.count >= Self.minimumLength else { throw .truncated }
        guard bytes[0] >> 4 == 4 else { throw .badVersion }
        let headerLength = Int(bytes[0] & 0x0f) &* 4
        guard headerLength >= Self.minimumLength else { throw .badIHL }
        let totalLength = Int(bytes.loadBigEndianUInt16(at: Self.totalLengthOffset))
        // BIG TCP sends IPv4 super-packets with total length 0.
        guard totalLength != 0 else { throw .jumbogram }
        guard totalLength <= bytes.count else { throw .truncated }
        guard totalLength >= headerLength else { throw .lengthMismatch }
        packet = UnsafeRawBufferPointer(rebasing: bytes[0..<totalLength])
    }

    var headerLength: Int { Int(packet[0] & 0x0f) &* 4 }

    /// More Fragments set, or a non-zero fragment offset (DF and the reserved bit do not count).
    var isFragment: Bool { packet.loadBigEndianUInt16(at: Self.fragmentOffset) & 0x3fff != 0 }

    var protocolNumber: UInt8 { packet[Self.protocolOffset] }

    var source: IPAddress { IPAddress(reading: packet, at: Self.sourceOffset, family: .ipv4) }

    var destination: IPAddress { IPAddress(reading: packet, at: Self.destinationOffset, family: .ipv4) }

    var payload: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: packet[headerLength...])
    }
}
