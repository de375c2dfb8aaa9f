import FuzzDriver
import RedirectCore

/// The packet views: any bytes either parse into a packet whose lengths lie inside the buffer
/// and whose tuple matches what the headers say, or are refused with a `PacketError`. The same
/// bytes go through the ICMP error view too (related traffic), with its own invariants. A crash,
/// an out-of-bounds read (AddressSanitizer) or a broken invariant is a finding.
@_cdecl("FuzzPacketParse_main")
public func main(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    FuzzDriver.run(argc, argv, fuzzPacketParse)
}

@_cdecl("LLVMFuzzerTestOneInput")
func fuzzPacketParse(_ input: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data = input else { return 0 }
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    checkICMPError(bytes)
    guard let packet = try? ParsedPacket.parse(bytes) else { return 0 }
    precondition(packet.l3HeaderLength >= (packet.family == .ipv4 ? 20 : 40), "header shorter than the fixed IP header")
    precondition(packet.l4Length >= (packet.proto == .tcp ? 20 : 8), "segment shorter than its transport header")
    precondition(packet.totalLength <= size, "packet runs past the buffer")
    precondition(packet.source.address.family == packet.family && packet.destination.address.family == packet.family)
    let ports = UnsafeRawBufferPointer(rebasing: bytes[packet.l4Offset..<packet.l4Offset + 4])
    precondition(packet.source.port == UInt16(ports[0]) << 8 | UInt16(ports[1]), "source port is not the header's")
    precondition(packet.destination.port == UInt16(ports[2]) << 8 | UInt16(ports[3]), "destination port is not the header's")
    return 0
}

/// An ICMP error view lies inside the buffer, quotes at least the ports, and its quoted tuple
/// and outer addresses are what the bytes say; a buffer is never both a TCP/UDP packet and an error.
func checkICMPError(_ bytes: UnsafeRawBufferPointer) {
    guard let message = try? ICMPErrorPacket.parse(bytes) else { return }
    precondition((try? ParsedPacket.parse(bytes)) == nil, "both a TCP/UDP packet and an ICMP error")
    let ipv4 = message.family == .ipv4
    precondition(message.icmpOffset >= (ipv4 ? 20 : 40), "ICMP header inside the IP header")
    precondition(message.totalLength <= bytes.count, "message runs past the buffer")
    precondition(ICMPErrorPacket.isError(type: message.type, family: message.family), "not an error type")
    precondition(message.quotedTransportLength >= 8, "quote without both ports")
    precondition(message.quotedTransportOffset >= message.quoteOffset + (ipv4 ? 20 : 40), "transport inside the quoted header")
    precondition(message.quotedTransportOffset + message.quotedTransportLength <= message.totalLength, "quote runs past the message")
    precondition(bytes[message.quoteOffset] >> 4 == (ipv4 ? 4 : 6), "quote of the other family")
    let ports = message.quotedTransportOffset
    precondition(message.quotedSource.port == UInt16(bytes[ports]) << 8 | UInt16(bytes[ports + 1]), "quoted source port")
    precondition(message.quotedDestination.port == UInt16(bytes[ports + 2]) << 8 | UInt16(bytes[ports + 3]), "quoted destination port")
    let addressOffsets = ipv4 ? (12, 16) : (8, 24)
    precondition(message.outerSource == IPAddress(reading: bytes, at: addressOffsets.0, family: message.family), "outer source")
    precondition(
        message.quotedDestination.address == IPAddress(reading: bytes, at: message.quoteOffset + addressOffsets.1, family: message.family),
        "quoted destination")
    if let field = message.quotedTransportChecksumOffset {
        precondition(field + 2 <= message.quotedTransportOffset + message.quotedTransportLength, "checksum field past the quote")
    }
}
