import RedirectCore
import XCTest

/// A redirected handshake's MSS is lowered so every segment fits what NFQUEUE copies whole;
/// checksums stay exact whether the option sits on an even or an odd offset.
final class MSSClampTests: XCTestCase {
    private let client = Endpoint(IPAddress("127.0.0.1")!, 40000)
    private let server = Endpoint(IPAddress("127.0.0.2")!, 9000)
    private let max = ParsedPacket.maximumRewritableMSS

    private func syn(options: [UInt8], flags: TCPFlags = [.syn], family: AddressFamily = .ipv4) -> WireTestPacket {
        let (source, destination) = family == .ipv4 ? (client, server) : (Endpoint(.ipv6Loopback, 40000), Endpoint(IPAddress("::2")!, 9000))
        var packet = WireTestPacket(proto: .tcp, source: source, destination: destination, tcpFlags: flags)
        packet.tcpOptions = options
        return packet
    }

    /// Clamps a copy of `packet`; returns whether it changed and the bytes after.
    private func clamp(_ packet: WireTestPacket, checksumNotReady: Bool = false) -> (Bool, [UInt8]) {
        var bytes = packet.bytes
        let changed = bytes.withUnsafeMutableBytes { raw -> Bool in
            guard let parsed = try? ParsedPacket.parse(raw) else { return false }
            return parsed.clampMSS(in: raw, checksumNotReady: checksumNotReady)
        }
        return (changed, bytes)
    }

    private func mss(_ value: UInt16) -> [UInt8] { [2, 4, UInt8(value >> 8), UInt8(value & 0xff)] }

    func testALoopbackSizedMSSIsLoweredWithAnExactChecksum() {
        for family in [AddressFamily.ipv4, .ipv6] {
            for (before, after) in [
                (mss(65483), mss(max)),  // even offset: the value is one checksum word
                ([1] + mss(65483) + [1, 1, 1], [1] + mss(max) + [1, 1, 1]),  // odd offset: it straddles two
                (
                    [1, 1, 4, 2] + mss(65495) + [8, 10] + Array(repeating: 7, count: 8) + [0, 0],
                    [1, 1, 4, 2] + mss(max) + [8, 10] + Array(repeating: 7, count: 8) + [0, 0]
                ),  // after SACK-permitted
            ] {
                for flags: TCPFlags in [[.syn], [.syn, .ack]] {
                    let (changed, bytes) = clamp(syn(options: before, flags: flags, family: family))
                    XCTAssertTrue(changed)
                    XCTAssertEqual(bytes, syn(options: after, flags: flags, family: family).bytes, "\(family) \(before)")
                }
            }
        }
    }

    func testWhatNeedsNoClampIsLeftByteForByte() {
        for packet in [
            syn(options: mss(1460)),  // an Ethernet-sized MSS
            syn(options: mss(max)),  // exactly the limit
            syn(options: mss(65483), flags: [.ack]),  // not a handshake packet
            syn(options: [1, 1, 1, 1]),  // no MSS option
            syn(options: [0] + mss(65483) + [0, 0, 0]),  // after end-of-options
            syn(options: [3, 0, 1, 1] + mss(65483)),  // a zero-length option: malformed, stop
            syn(options: [2, 3, 0xff, 0xcb]),  // an MSS option of the wrong length
            syn(options: [1, 1, 1, 2, 4, 0xff, 0xcb, 0].dropLast(4) + [1, 1, 1, 2]),  // cut off by the header's end
        ] {
            let (changed, bytes) = clamp(packet)
            XCTAssertFalse(changed, "\(packet.tcpOptions)")
            XCTAssertEqual(bytes, packet.bytes, "\(packet.tcpOptions)")
        }
    }

    func testAChecksumNotReadyIsLeftForTheFullRecompute() {
        let packet = syn(options: mss(65483))
        let (changed, bytes) = clamp(packet, checksumNotReady: true)
        XCTAssertTrue(changed)
        XCTAssertEqual(Array(bytes[36..<38]), Array(packet.bytes[36..<38]), "the checksum field is untouched")
        XCTAssertEqual(Array(bytes[42..<44]), [UInt8(max >> 8), UInt8(max & 0xff)])
    }
}
