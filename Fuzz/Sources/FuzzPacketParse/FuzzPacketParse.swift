import FuzzDriver
import RedirectCore

/// The packet views: any bytes either parse into a packet whose lengths lie inside the buffer
/// and whose tuple matches what the headers say, or are refused with a `PacketError`. A crash,
/// an out-of-bounds read (AddressSanitizer) or a broken invariant is a finding.
@_cdecl("FuzzPacketParse_main")
public func main(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    FuzzDriver.run(argc, argv, fuzzPacketParse)
}

@_cdecl("LLVMFuzzerTestOneInput")
func fuzzPacketParse(_ input: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data = input else { return 0 }
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
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
