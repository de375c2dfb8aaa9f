import RedirectCore

// The packets the daemon's datapath tests enqueue: built by hand, as the kernel queues them.

/// An IPv4 TCP segment with correct checksums.
func segment(from source: Endpoint, to destination: Endpoint, flags: UInt8, payload: [UInt8] = []) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: 40 + payload.count)
    bytes[0] = 0x45
    bytes[2] = UInt8(bytes.count >> 8)
    bytes[3] = UInt8(bytes.count & 0xff)
    bytes[6] = 0x40
    bytes[8] = 64
    bytes[9] = 6
    for (offset, value) in [(12, source.address.ipv4Value), (16, destination.address.ipv4Value)] {
        for i in 0..<4 { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (24 - 8 * UInt32(i))) }
    }
    bytes[20] = UInt8(source.port >> 8)
    bytes[21] = UInt8(source.port & 0xff)
    bytes[22] = UInt8(destination.port >> 8)
    bytes[23] = UInt8(destination.port & 0xff)
    bytes[32] = 0x50
    bytes[33] = flags
    bytes[34] = 0xff
    bytes.replaceSubrange(40..., with: payload)
    bytes.withUnsafeMutableBytes { raw in
        let ip = InternetChecksum.ipv4HeaderChecksum(UnsafeRawBufferPointer(rebasing: raw[0..<20]))
        raw[10] = UInt8(ip >> 8)
        raw[11] = UInt8(ip & 0xff)
        let tcp = InternetChecksum.transportChecksum(
            segment: UnsafeRawBufferPointer(rebasing: raw[20...]), checksumOffset: 16,
            source: source.address, destination: destination.address, protocolNumber: 6)
        raw[36] = UInt8(tcp >> 8)
        raw[37] = UInt8(tcp & 0xff)
    }
    return bytes
}
