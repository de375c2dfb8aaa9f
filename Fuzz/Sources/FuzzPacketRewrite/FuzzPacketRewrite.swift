import FuzzDriver
import RedirectCore

/// The rewrite: input = 19 bytes of choices (which end, checksum mode, new address and port)
/// then a packet. Whatever parses is rewritten in a copy; the result must parse again to the
/// same packet with the new endpoint, carry a correct IPv4 header checksum, and keep the
/// transport checksum as valid (or as invalid) as it was, or make it valid when computed in full.
/// An ICMP error instead gets the related-traffic translation (`fuzzICMPTranslation`).
@_cdecl("FuzzPacketRewrite_main")
public func main(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    FuzzDriver.run(argc, argv, fuzzPacketRewrite)
}

@_cdecl("LLVMFuzzerTestOneInput")
func fuzzPacketRewrite(_ input: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data = input else { return 0 }
    let choicesLength = 19
    guard size > choicesLength else { return 0 }
    let choices = UnsafeRawBufferPointer(start: data, count: choicesLength)
    let packetBytes = UnsafeRawBufferPointer(start: data + choicesLength, count: size - choicesLength)
    if let message = try? ICMPErrorPacket.parse(packetBytes) {
        fuzzICMPTranslation(message, packetBytes, choices)
        return 0
    }
    guard var packet = try? ParsedPacket.parse(packetBytes) else { return 0 }

    let rewriteSource = choices[0] & 1 != 0
    let checksumNotReady = choices[0] & 2 != 0
    let port = UInt16(choices[1]) << 8 | UInt16(choices[2])
    let address =
        packet.family == .ipv4
        ? IPAddress(ipv4: choices.loadBigEndianUInt32(at: 3))
        : IPAddress(high: choices.loadBigEndianUInt64(at: 3), low: choices.loadBigEndianUInt64(at: 11))
    // The view keeps IPv4 in ::ffff:0:0/96, so an IPv6 packet never carries one.
    guard address.family == packet.family else { return 0 }
    let target = Endpoint(address, port)

    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: packetBytes.count, alignment: 8)
    defer { buffer.deallocate() }
    buffer.copyMemory(from: packetBytes)
    let wasValid = TransportChecksum.isValid(packet, in: UnsafeRawBufferPointer(buffer))
    let before = packet
    do {
        if rewriteSource {
            try packet.rewriteSource(to: target, in: buffer, checksumNotReady: checksumNotReady)
        } else {
            try packet.rewriteDestination(to: target, in: buffer, checksumNotReady: checksumNotReady)
        }
    } catch {
        preconditionFailure("a parsed packet refused a same-family rewrite: \(error)")
    }

    let bytes = UnsafeRawBufferPointer(buffer)
    let again: ParsedPacket
    do {
        again = try ParsedPacket.parse(bytes)
    } catch {
        preconditionFailure("the rewritten packet no longer parses: \(error)")
    }
    precondition(again == packet, "re-parse disagrees with the rewritten view")
    precondition(rewriteSource ? again.source == target : again.destination == target, "endpoint not rewritten")
    precondition(rewriteSource ? again.destination == before.destination : again.source == before.source, "other end changed")
    if packet.family == .ipv4 {
        let header = UnsafeRawBufferPointer(rebasing: bytes[0..<packet.l3HeaderLength])
        precondition(
            InternetChecksum.ipv4HeaderChecksum(header) == header.loadBigEndianUInt16(at: 10),
            "IPv4 header checksum wrong after the rewrite")
    }
    let isValid = TransportChecksum.isValid(packet, in: bytes)
    if checksumNotReady {
        precondition(isValid, "a full recompute left a wrong transport checksum")
    } else if wasValid {
        precondition(isValid, "the incremental update broke a correct transport checksum")
    }
    // UDP over IPv6 with checksum 0 is repaired whatever the mode; a wrong one stays wrong.
    return 0
}

/// Verifies a TCP/UDP checksum from scratch (UDP over IPv4 with 0 means "no checksum").
enum TransportChecksum {
    static func isValid(_ packet: ParsedPacket, in bytes: UnsafeRawBufferPointer) -> Bool {
        let segment = UnsafeRawBufferPointer(rebasing: bytes[packet.l4Offset..<packet.totalLength])
        let offset = packet.proto == .tcp ? 16 : 6
        let stored = segment.loadBigEndianUInt16(at: offset)
        if packet.proto == .udp && stored == 0 { return packet.family == .ipv4 }
        var expected = InternetChecksum.transportChecksum(
            segment: segment, checksumOffset: offset, source: packet.source.address,
            destination: packet.destination.address, protocolNumber: packet.proto.rawValue)
        if packet.proto == .udp && expected == 0 { expected = 0xffff }
        // 0x0000 and 0xFFFF are the same one's-complement value for TCP.
        return stored == expected || (packet.proto == .tcp && stored ^ expected == 0xffff && (stored == 0 || expected == 0))
    }
}

/// Related traffic: the error's quoted source (and outer destination) or quoted destination (and
/// outer source) becomes the chosen endpoint. The result must parse again to the same view, the
/// other ends unchanged, the outer IPv4 header checksum correct, and the ICMP checksum and the
/// quoted IPv4 header checksum as valid as they were (the ICMP one valid when computed in full).
func fuzzICMPTranslation(_ parsed: ICMPErrorPacket, _ packetBytes: UnsafeRawBufferPointer, _ choices: UnsafeRawBufferPointer) {
    var message = parsed
    let quotedSource = choices[0] & 1 != 0
    let checksumNotReady = choices[0] & 2 != 0
    let port = UInt16(choices[1]) << 8 | UInt16(choices[2])
    let address =
        message.family == .ipv4
        ? IPAddress(ipv4: choices.loadBigEndianUInt32(at: 3))
        : IPAddress(high: choices.loadBigEndianUInt64(at: 3), low: choices.loadBigEndianUInt64(at: 11))
    guard address.family == message.family else { return }
    let target = Endpoint(address, port)

    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: packetBytes.count, alignment: 8)
    defer { buffer.deallocate() }
    buffer.copyMemory(from: packetBytes)
    let bytes = UnsafeRawBufferPointer(buffer)
    let icmpWasValid = message.fullChecksum(in: bytes) == bytes.loadBigEndianUInt16(at: message.icmpOffset + 2)
    let quotedHeaderWasValid = quotedIPv4HeaderIsValid(message, bytes)
    let before = message
    do {
        if quotedSource {
            try message.rewriteQuotedSource(to: target, in: buffer, checksumNotReady: checksumNotReady)
        } else {
            try message.rewriteQuotedDestination(to: target, in: buffer, checksumNotReady: checksumNotReady)
        }
    } catch {
        preconditionFailure("a parsed ICMP error refused a same-family translation: \(error)")
    }
    let again: ICMPErrorPacket
    do {
        again = try ICMPErrorPacket.parse(bytes)
    } catch {
        preconditionFailure("the translated error no longer parses: \(error)")
    }
    precondition(again == message, "re-parse disagrees with the translated view")
    if quotedSource {
        precondition(again.quotedSource == target && again.outerDestination == target.address, "end not translated")
        precondition(again.quotedDestination == before.quotedDestination && again.outerSource == before.outerSource, "other end changed")
    } else {
        precondition(again.quotedDestination == target && again.outerSource == target.address, "end not translated")
        precondition(again.quotedSource == before.quotedSource && again.outerDestination == before.outerDestination, "other end changed")
    }
    if message.family == .ipv4 {
        let header = UnsafeRawBufferPointer(rebasing: bytes[0..<message.icmpOffset])
        precondition(InternetChecksum.ipv4HeaderChecksum(header) == header.loadBigEndianUInt16(at: 10), "outer IPv4 header checksum wrong")
    }
    let icmpIsValid = message.fullChecksum(in: bytes) == bytes.loadBigEndianUInt16(at: message.icmpOffset + 2)
    if checksumNotReady || icmpWasValid {
        precondition(icmpIsValid, "the ICMP checksum is wrong after the translation")
    }
    if quotedHeaderWasValid {
        precondition(quotedIPv4HeaderIsValid(message, bytes), "the incremental update broke the quoted IPv4 header checksum")
    }
}

/// Whether a quoted IPv4 header (always whole in a parsed error) carries a correct checksum;
/// false for IPv6, which has none.
func quotedIPv4HeaderIsValid(_ message: ICMPErrorPacket, _ bytes: UnsafeRawBufferPointer) -> Bool {
    guard message.family == .ipv4 else { return false }
    let header = UnsafeRawBufferPointer(rebasing: bytes[message.quoteOffset..<message.quotedTransportOffset])
    return InternetChecksum.ipv4HeaderChecksum(header) == header.loadBigEndianUInt16(at: 10)
}
