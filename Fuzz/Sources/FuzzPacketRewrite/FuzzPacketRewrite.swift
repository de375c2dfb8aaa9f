import FuzzDriver
import RedirectCore

/// The rewrite: input = 19 bytes of choices (which end, checksum mode, new address and port)
/// then a packet. Whatever parses is rewritten in a copy; the result must parse again to the
/// same packet with the new endpoint, carry a correct IPv4 header checksum, and keep the
/// transport checksum as valid (or as invalid) as it was, or make it valid when computed in full.
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
    guard var packet = try? ParsedPacket.parse(packetBytes) else { return 0 }

    let rewriteSource = choices[0] & 1 != 0
    let checksumNotReady = choices[0] & 2 != 0
    let port = UInt16(choices[1]) << 8 | UInt16(choices[2])
    let address = packet.family == .ipv4
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
