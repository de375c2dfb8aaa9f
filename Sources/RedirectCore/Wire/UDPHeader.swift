/// A checked view of a UDP datagram (RFC 768): after `init(checking:)` succeeds, every
/// accessor reads inside `datagram` without further checks.
struct UDPHeader {
    static let length = 8
    static let sourcePortOffset = 0
    static let destinationPortOffset = 2
    static let lengthOffset = 4
    static let checksumOffset = 6

    /// Header and data, as the IP length gives them.
    let datagram: UnsafeRawBufferPointer

    /// The UDP length must equal the IP payload length. The kernel would trim a datagram
    /// shorter than its IP payload, but its checksum then covers less than the packet we
    /// send back; no real stack sends one, so it is refused rather than half-handled.
    init(checking datagram: UnsafeRawBufferPointer) throws(PacketError) {
        guard datagram.count >= Self.length else { throw .transportTruncated }
        guard Int(datagram.loadBigEndianUInt16(at: Self.lengthOffset)) == datagram.count else {
            throw .badUDPLength
        }
        self.datagram = datagram
    }

    var sourcePort: UInt16 { datagram.loadBigEndianUInt16(at: Self.sourcePortOffset) }

    var destinationPort: UInt16 { datagram.loadBigEndianUInt16(at: Self.destinationPortOffset) }
}
