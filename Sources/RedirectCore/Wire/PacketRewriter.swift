/// NAT on the bytes: rewrites one end of a parsed packet in place and leaves every checksum
/// correct, allocating nothing.
///
/// `bytes` must be the buffer the packet was parsed from, changed since only by these
/// rewrites (the incremental update starts from the endpoints the packet remembers).
///
/// Checksums after a rewrite:
/// - IPv4 header: recomputed in full (at most 60 bytes), so it is correct even if it was not
///   before. The kernel verifies what a payload verdict hands back in software, and it had
///   already verified (receive path) or computed (local path) the header checksum before the
///   hooks, so repairing one is no loss of information.
/// - TCP/UDP, `checksumNotReady` (the kernel's NFQA_SKB_CSUMNOTREADY): the field holds only a
///   partial pseudo-header sum, so the checksum is computed in full over the whole segment.
/// - TCP/UDP otherwise: updated incrementally (RFC 1624 eqn. 3) for the address and port, which
///   keeps a wrong checksum wrong, as a router would: the endpoint still detects corruption.
/// - UDP over IPv4 with checksum 0 ("none") stays 0. UDP over IPv6 with checksum 0 (invalid,
///   RFC 8200 8.1) gets a full checksum. A computed UDP checksum of 0 is written as 0xFFFF.
extension ParsedPacket {
    public mutating func rewriteDestination(
        to endpoint: Endpoint, in bytes: UnsafeMutableRawBufferPointer, checksumNotReady: Bool
    ) throws(PacketError) {
        try rewrite(isSource: false, to: endpoint, in: bytes, checksumNotReady: checksumNotReady)
    }

    public mutating func rewriteSource(
        to endpoint: Endpoint, in bytes: UnsafeMutableRawBufferPointer, checksumNotReady: Bool
    ) throws(PacketError) {
        try rewrite(isSource: true, to: endpoint, in: bytes, checksumNotReady: checksumNotReady)
    }

    private mutating func rewrite(
        isSource: Bool, to new: Endpoint, in bytes: UnsafeMutableRawBufferPointer, checksumNotReady: Bool
    ) throws(PacketError) {
        guard new.address.family == family else { throw .familyMismatch }
        guard bytes.count >= totalLength else { throw .truncated }
        let old = isSource ? source : destination

        let addressOffset: Int
        switch family {
        case .ipv4: addressOffset = isSource ? IPv4Header.sourceOffset : IPv4Header.destinationOffset
        case .ipv6: addressOffset = isSource ? IPv6Header.sourceOffset : IPv6Header.destinationOffset
        }
        // TCP and UDP both start with the source port, then the destination port.
        let portOffset = l4Offset &+ (isSource ? TCPHeader.sourcePortOffset : TCPHeader.destinationPortOffset)
        new.address.write(to: bytes, at: addressOffset)
        bytes.storeBigEndian(new.port, at: portOffset)
        if isSource { source = new } else { destination = new }

        if family == .ipv4 {
            let header = UnsafeRawBufferPointer(UnsafeMutableRawBufferPointer(rebasing: bytes[0..<l3HeaderLength]))
            bytes.storeBigEndian(InternetChecksum.ipv4HeaderChecksum(header), at: IPv4Header.checksumOffset)
        }

        let checksumOffset = l4Offset &+ (proto == .tcp ? TCPHeader.checksumOffset : UDPHeader.checksumOffset)
        let stored = bytes.loadBigEndianUInt16(at: checksumOffset)
        let checksum: UInt16
        if checksumNotReady || (proto == .udp && family == .ipv6 && stored == 0) {
            let segment = UnsafeRawBufferPointer(
                UnsafeMutableRawBufferPointer(rebasing: bytes[l4Offset..<totalLength]))
            checksum = InternetChecksum.transportChecksum(
                segment: segment, checksumOffset: checksumOffset &- l4Offset,
                source: source.address, destination: destination.address, protocolNumber: proto.rawValue)
        } else if proto == .udp && stored == 0 {
            return
        } else {
            checksum = InternetChecksum.update(
                stored,
                oldSum: InternetChecksum.fold(UInt64(old.address.checksumWordSum) &+ UInt64(old.port)),
                newSum: InternetChecksum.fold(UInt64(new.address.checksumWordSum) &+ UInt64(new.port)))
        }
        bytes.storeBigEndian(proto == .udp && checksum == 0 ? 0xffff : checksum, at: checksumOffset)
    }
}
