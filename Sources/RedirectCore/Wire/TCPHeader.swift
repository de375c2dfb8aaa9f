/// A checked view of a TCP segment (RFC 9293 3.1): after `init(checking:)` succeeds, every
/// accessor reads inside `segment` without further checks.
struct TCPHeader {
    static let minimumLength = 20
    static let sourcePortOffset = 0
    static let destinationPortOffset = 2
    static let sequenceOffset = 4
    static let dataOffsetOffset = 12
    static let flagsOffset = 13
    static let checksumOffset = 16

    /// The whole segment: header, options and data, as the IP length gives it.
    let segment: UnsafeRawBufferPointer

    init(checking segment: UnsafeRawBufferPointer) throws(PacketError) {
        guard segment.count >= Self.minimumLength else { throw .transportTruncated }
        let headerLength = Int(segment[Self.dataOffsetOffset] >> 4) &* 4
        guard headerLength >= Self.minimumLength, headerLength <= segment.count else {
            throw .badTCPDataOffset
        }
        self.segment = segment
    }

    var sourcePort: UInt16 { segment.loadBigEndianUInt16(at: Self.sourcePortOffset) }

    var destinationPort: UInt16 { segment.loadBigEndianUInt16(at: Self.destinationPortOffset) }

    var flags: TCPFlags { TCPFlags(rawValue: segment[Self.flagsOffset]) }

    /// Sequence number to one past the data, SYN and FIN counting one each.
    var sequenceSpan: TCPSequenceSpan {
        let start = segment.loadBigEndianUInt32(at: Self.sequenceOffset)
        let flagBits = segment[Self.flagsOffset]
        let dataLength = segment.count &- Int(segment[Self.dataOffsetOffset] >> 4) &* 4
        // FIN 0x01 and SYN 0x02 each take one sequence number.
        let length = UInt32(truncatingIfNeeded: dataLength) &+ UInt32(flagBits & 0x01) &+ UInt32((flagBits >> 1) & 0x01)
        return TCPSequenceSpan(start: start, end: start &+ length)
    }
}
