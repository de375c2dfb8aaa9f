import Foundation
import RedirectCore

/// A UDP socket on 127.0.0.1 for the root tests.
final class UDPSocket {
    let fd: CInt

    init(port: UInt16) throws {
        fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard fd >= 0, bound == 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
    }

    deinit { close(fd) }

    func send(_ text: String, toPort port: UInt16) throws {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        let bytes = Array(text.utf8)
        let sent = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                sendto(fd, bytes, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard sent == bytes.count else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
    }

    /// Every datagram that arrives within the wait.
    func receiveAll(waitMilliseconds: Int32) -> [String] {
        var texts: [String] = []
        var buffer = [UInt8](repeating: 0, count: 2048)
        while true {
            var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&descriptor, 1, waitMilliseconds) == 1 else { return texts }
            let count = recv(fd, &buffer, buffer.count, 0)
            guard count >= 0 else { return texts }
            texts.append(String(decoding: buffer[0..<count], as: UTF8.self))
        }
    }
}

/// Naive IPv4/UDP helpers for tests: read the datagram text, change the destination port and
/// recompute the UDP checksum in full.
enum UDPPacket {
    static func text(_ packet: UnsafeMutableRawBufferPointer) -> String {
        let headerLength = Int(packet[0] & 0x0f) * 4
        return String(decoding: UnsafeRawBufferPointer(rebasing: packet[(headerLength + 8)...]), as: UTF8.self)
    }

    static func setDestinationPort(_ port: UInt16, in packet: UnsafeMutableRawBufferPointer) {
        let headerLength = Int(packet[0] & 0x0f) * 4
        packet.storeBigEndian(port, at: headerLength + 2)
        packet.storeBigEndian(UInt16(0), at: headerLength + 6)
        let udpLength = packet.count - headerLength
        var sum: UInt32 = 0
        for offset in stride(from: 12, to: 20, by: 2) { sum += UInt32(packet.loadBigEndianUInt16(at: offset)) }
        sum += 17 + UInt32(udpLength)
        var offset = headerLength
        while offset + 1 < packet.count {
            sum += UInt32(packet.loadBigEndianUInt16(at: offset))
            offset += 2
        }
        if offset < packet.count { sum += UInt32(packet[offset]) << 8 }
        while sum > 0xffff { sum = (sum & 0xffff) + (sum >> 16) }
        let checksum = ~UInt16(sum)
        packet.storeBigEndian(checksum == 0 ? 0xffff : checksum, at: headerLength + 6)
    }
}
