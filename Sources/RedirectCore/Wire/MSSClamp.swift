/// Lowers the MSS a redirected connection's SYN and SYN/ACK announce, so that no segment of
/// the connection is larger than NFQUEUE can hand us whole.
///
/// The kernel copies at most 65531 bytes of a queued packet (NFQNL_MAX_COPY_RANGE), and a
/// payload verdict shorter than the packet trims it. Loopback's MTU is 65536, so a local
/// connection redirected to 127.0.0.1 / ::1 announces MSS 65483 (IPv4) and sends 65536-byte
/// segments: we would see them truncated and could not rewrite them. Clamping the MSS in the
/// handshake (as `iptables -j TCPMSS` does) keeps every segment within what we can rewrite.
extension ParsedPacket {
    /// The largest MSS whose segments we can still rewrite: the copy range less the IPv6 and
    /// TCP headers (60 bytes) and 40 bytes for IPv4 options or IPv6 extension headers.
    public static let maximumRewritableMSS: UInt16 = 65_431

    private static let optionEnd: UInt8 = 0
    private static let optionNoOperation: UInt8 = 1
    private static let optionMSS: UInt8 = 2
    private static let optionMSSLength: UInt8 = 4

    /// Lowers a SYN's MSS option to `maximum` if it announces more; returns whether it did.
    /// The TCP checksum is updated incrementally (RFC 1624), or left for the caller's full
    /// recompute when `checksumNotReady`. Other packets and malformed options are left alone.
    @discardableResult
    public func clampMSS(in bytes: UnsafeMutableRawBufferPointer, to maximum: UInt16 = maximumRewritableMSS, checksumNotReady: Bool) -> Bool {
        guard proto == .tcp, tcpFlags.contains(.syn), bytes.count >= totalLength else { return false }
        // The parser checked data offset >= 20 and within the segment.
        let headerEnd = l4Offset &+ Int(bytes[l4Offset &+ TCPHeader.dataOffsetOffset] >> 4) &* 4
        var offset = l4Offset &+ TCPHeader.minimumLength
        while offset < headerEnd {
            let kind = bytes[offset]
            if kind == Self.optionEnd { return false }
            if kind == Self.optionNoOperation {
                offset &+= 1
                continue
            }
            guard offset &+ 1 < headerEnd else { return false }
            let length = Int(bytes[offset &+ 1])
            guard length >= 2, offset &+ length <= headerEnd else { return false }
            if kind == Self.optionMSS {
                guard length == Int(Self.optionMSSLength) else { return false }
                let announced = bytes.loadBigEndianUInt16(at: offset &+ 2)
                guard announced > maximum else { return false }
                bytes.storeBigEndian(maximum, at: offset &+ 2)
                if !checksumNotReady {
                    let checksumOffset = l4Offset &+ TCPHeader.checksumOffset
                    let stored = bytes.loadBigEndianUInt16(at: checksumOffset)
                    // The MSS value is one 16-bit word of the segment only if it sits at an even
                    // offset from the TCP header; otherwise it straddles two words.
                    let checksum: UInt16
                    if (offset &+ 2 &- l4Offset) & 1 == 0 {
                        checksum = InternetChecksum.update(stored, replacing: announced, with: maximum)
                    } else {
                        checksum = InternetChecksum.update(
                            stored, replacing: UInt32(announced) << 8, with: UInt32(maximum) << 8)
                    }
                    bytes.storeBigEndian(checksum, at: checksumOffset)
                }
                return true
            }
            offset &+= length
        }
        return false
    }
}
