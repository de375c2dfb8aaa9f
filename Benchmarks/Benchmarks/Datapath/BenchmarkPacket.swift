import RedirectCore

/// One IPv4 or IPv6 TCP/UDP packet with correct checksums, built once, and a working copy the
/// code under test rewrites in place. `restore()` puts the original bytes back (a memcpy of
/// the packet, part of every measured operation that rewrites) so each iteration sees the
/// packet as the kernel would hand it over.
final class BenchmarkPacket {
    let template: UnsafeMutableRawBufferPointer
    let bytes: UnsafeMutableRawBufferPointer

    init(proto: TransportProtocol, source: Endpoint, destination: Endpoint, tcpFlags: TCPFlags = [.ack], payloadLength: Int = 64) {
        let family = source.address.family
        let l3 = family == .ipv4 ? 20 : 40
        let l4 = (proto == .tcp ? 20 : 8) + payloadLength
        template = .allocate(byteCount: l3 + l4, alignment: 16)
        bytes = .allocate(byteCount: l3 + l4, alignment: 16)
        template.initializeMemory(as: UInt8.self, repeating: 0)
        for index in 0..<payloadLength { template[l3 + l4 - payloadLength + index] = UInt8(truncatingIfNeeded: index) }

        if family == .ipv4 {
            template[0] = 0x45
            template.storeBigEndian(UInt16(l3 + l4), at: 2)
            template.storeBigEndian(UInt16(0x4000), at: 6)  // DF, no fragment
            template[8] = 64
            template[9] = proto.rawValue
            source.address.write(to: template, at: 12)
            destination.address.write(to: template, at: 16)
            let header = UnsafeRawBufferPointer(rebasing: template[0..<20])
            template.storeBigEndian(InternetChecksum.ipv4HeaderChecksum(header), at: 10)
        } else {
            template[0] = 0x60
            template.storeBigEndian(UInt16(l4), at: 4)
            template[6] = proto.rawValue
            template[7] = 64
            source.address.write(to: template, at: 8)
            destination.address.write(to: template, at: 24)
        }
        template.storeBigEndian(source.port, at: l3)
        template.storeBigEndian(destination.port, at: l3 + 2)
        let checksumOffset: Int
        if proto == .tcp {
            template.storeBigEndian(UInt32(0x0102_0304), at: l3 + 4)
            template[l3 + 12] = 5 << 4
            template[l3 + 13] = tcpFlags.rawValue
            template.storeBigEndian(UInt16(65535), at: l3 + 14)
            checksumOffset = 16
        } else {
            template.storeBigEndian(UInt16(l4), at: l3 + 4)
            checksumOffset = 6
        }
        let segment = UnsafeRawBufferPointer(rebasing: template[l3...])
        let checksum = InternetChecksum.transportChecksum(
            segment: segment, checksumOffset: checksumOffset,
            source: source.address, destination: destination.address, protocolNumber: proto.rawValue)
        template.storeBigEndian(checksum, at: l3 + checksumOffset)
        restore()
    }

    deinit {
        template.deallocate()
        bytes.deallocate()
    }

    @inline(__always)
    func restore() {
        bytes.baseAddress!.copyMemory(from: template.baseAddress!, byteCount: template.count)
    }
}
