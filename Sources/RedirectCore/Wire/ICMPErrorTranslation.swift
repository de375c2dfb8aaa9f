/// NAT of related traffic on the bytes: what the kernel's `nf_nat_icmp_reply_translation`
/// (net/netfilter/nf_nat_proto.c) does to an ICMP error about a NATed packet, in place, with
/// every checksum left correct and nothing allocated.
///
/// An error travels back toward the quoted packet's source, so the quoted packet's source and
/// the outer destination are one end of the flow, the quoted destination and the outer source
/// the other. Each translation changes one end in both places, as the kernel does (the inner
/// tuple with the reversed manip, then the outer header with the hook's manip):
/// - `rewriteQuotedSource(to:)`: the quoted source becomes `endpoint` and the outer destination
///   its address (an error about a reply the client saw from the original destination goes to
///   the proxy that really sent it);
/// - `rewriteQuotedDestination(to:)`: the quoted destination becomes `endpoint` and the outer
///   source its address (an error about a client's packet to the proxy comes from the
///   original destination the client was talking to).
///
/// Checksums, incrementally (RFC 1624 eqn. 3), so a wrong one stays wrong as a router keeps it:
/// - the quoted IPv4 header checksum, for the quoted address;
/// - the quoted TCP or UDP checksum, for the quoted address and port, when the quote holds it
///   (a UDP checksum of 0, "none" in IPv4, stays 0; a computed 0 is written 0xFFFF);
/// - the ICMP checksum for every word changed in the quote, and for ICMPv6 also the outer
///   address in its pseudo-header; in full when `checksumNotReady` (never seen for ICMP, which
///   the kernel checksums when it builds the message, but then the field cannot be updated);
/// - the outer IPv4 header checksum, recomputed in full as `ParsedPacket`'s rewriter does.
/// Quoted sequence numbers pass unchanged: a TCP stack believes an error only when the quoted
/// sequence number is one it has sent.
extension ICMPErrorPacket {
    public mutating func rewriteQuotedSource(
        to endpoint: Endpoint, in bytes: UnsafeMutableRawBufferPointer, checksumNotReady: Bool
    ) throws(PacketError) {
        try rewrite(quotedSource: true, to: endpoint, in: bytes, checksumNotReady: checksumNotReady)
    }

    public mutating func rewriteQuotedDestination(
        to endpoint: Endpoint, in bytes: UnsafeMutableRawBufferPointer, checksumNotReady: Bool
    ) throws(PacketError) {
        try rewrite(quotedSource: false, to: endpoint, in: bytes, checksumNotReady: checksumNotReady)
    }

    private mutating func rewrite(
        quotedSource isSource: Bool, to new: Endpoint, in bytes: UnsafeMutableRawBufferPointer, checksumNotReady: Bool
    ) throws(PacketError) {
        guard new.address.family == family else { throw .familyMismatch }
        guard bytes.count >= totalLength else { throw .truncated }
        let old = isSource ? quotedSource : quotedDestination
        let oldOuter = isSource ? outerDestination : outerSource
        // Words of the ICMP message (and ICMPv6 pseudo-header) before and after: every field
        // changed sits at an even offset from the message's start, so words stay words.
        var before = UInt64(old.address.checksumWordSum) &+ UInt64(old.port)
        var after = UInt64(new.address.checksumWordSum) &+ UInt64(new.port)
        let oldEnd = InternetChecksum.fold(before)
        let newEnd = InternetChecksum.fold(after)

        let quotedAddressOffset: Int
        let outerAddressOffset: Int
        switch family {
        case .ipv4:
            quotedAddressOffset = isSource ? IPv4Header.sourceOffset : IPv4Header.destinationOffset
            outerAddressOffset = isSource ? IPv4Header.destinationOffset : IPv4Header.sourceOffset
        case .ipv6:
            quotedAddressOffset = isSource ? IPv6Header.sourceOffset : IPv6Header.destinationOffset
            outerAddressOffset = isSource ? IPv6Header.destinationOffset : IPv6Header.sourceOffset
        }
        new.address.write(to: bytes, at: quoteOffset &+ quotedAddressOffset)
        bytes.storeBigEndian(
            new.port,
            at: quotedTransportOffset &+ (isSource ? TCPHeader.sourcePortOffset : TCPHeader.destinationPortOffset))
        if isSource { quotedSource = new } else { quotedDestination = new }

        if family == .ipv4 {
            let field = quoteOffset &+ IPv4Header.checksumOffset
            let stored = bytes.loadBigEndianUInt16(at: field)
            let updated = InternetChecksum.update(stored, replacing: old.address, with: new.address)
            bytes.storeBigEndian(updated, at: field)
            before &+= UInt64(stored)
            after &+= UInt64(updated)
        }
        if let field = quotedTransportChecksumOffset {
            let stored = bytes.loadBigEndianUInt16(at: field)
            if !(proto == .udp && stored == 0) {
                var updated = InternetChecksum.update(stored, oldSum: oldEnd, newSum: newEnd)
                if proto == .udp && updated == 0 { updated = 0xffff }
                bytes.storeBigEndian(updated, at: field)
                before &+= UInt64(stored)
                after &+= UInt64(updated)
            }
        }

        new.address.write(to: bytes, at: outerAddressOffset)
        if isSource { outerDestination = new.address } else { outerSource = new.address }
        switch family {
        case .ipv4:
            let header = UnsafeRawBufferPointer(UnsafeMutableRawBufferPointer(rebasing: bytes[0..<icmpOffset]))
            bytes.storeBigEndian(InternetChecksum.ipv4HeaderChecksum(header), at: IPv4Header.checksumOffset)
        case .ipv6:
            before &+= UInt64(oldOuter.checksumWordSum)
            after &+= UInt64(new.address.checksumWordSum)
        }

        let field = icmpOffset &+ 2
        let checksum: UInt16
        if checksumNotReady {
            checksum = fullChecksum(in: UnsafeRawBufferPointer(bytes))
        } else {
            checksum = InternetChecksum.update(
                bytes.loadBigEndianUInt16(at: field), oldSum: InternetChecksum.fold(before),
                newSum: InternetChecksum.fold(after))
        }
        bytes.storeBigEndian(checksum, at: field)
    }

    /// The checksum the ICMP message in `bytes` should carry, with its checksum field counted as
    /// zero: over the message (RFC 792), and for ICMPv6 the pseudo-header too (RFC 4443 2.3).
    public func fullChecksum(in bytes: UnsafeRawBufferPointer) -> UInt16 {
        let message = UnsafeRawBufferPointer(rebasing: bytes[icmpOffset..<totalLength])
        switch family {
        case .ipv4:
            let stored = message.loadBigEndianUInt16(at: 2)
            return ~InternetChecksum.fold(UInt64(InternetChecksum.sum(message)) &+ UInt64(~stored))
        case .ipv6:
            return InternetChecksum.transportChecksum(
                segment: message, checksumOffset: 2, source: outerSource, destination: outerDestination,
                protocolNumber: Self.icmpv6Protocol)
        }
    }
}
