import KernelTesting
import RedirectCore
import XCTest

@testable import Kernel

final class AddressMessagesTests: XCTestCase {
    /// RTM_NEWADDR: ifaddrmsg (family, prefix, flags, scope, index) and attributes.
    private func newAddress(family: UInt8, prefix: UInt8, flags: UInt8 = 0, index: UInt32, sequence: UInt32 = 1, attributes: [UInt8]) -> [UInt8] {
        Fixture.message(type: 20, flags: 2, sequence: sequence, [family, prefix, flags, 0] + Fixture.u32(index) + attributes)
    }

    private func read(_ datagram: [UInt8], sequence: UInt32 = 1) throws -> ([InterfaceAddress], AddressMessages.DumpProgress) {
        var addresses: [InterfaceAddress] = []
        let progress = try datagram.withUnsafeBytes { try AddressMessages.readDump(datagram: $0, sequence: sequence, into: &addresses) }
        return (addresses, progress)
    }

    func testDumpMessages() throws {
        let v6 = [UInt8](repeating: 0, count: 15) + [1]
        let datagram =
            newAddress(family: 2, prefix: 24, index: 2, attributes: Fixture.attribute(1, [10, 0, 0, 9]) + Fixture.attribute(2, [10, 0, 0, 1]))
            + newAddress(family: 2, prefix: 24, flags: 0x01, index: 2, attributes: Fixture.attribute(2, [10, 0, 0, 2]))
            + newAddress(family: 10, prefix: 128, index: 1, attributes: Fixture.attribute(1, v6) + Fixture.attribute(8, Fixture.u32(0x40)))
            + newAddress(
                family: 10, prefix: 64, index: 1,
                attributes: Fixture.attribute(1, [0xfd] + [UInt8](repeating: 0, count: 14) + [2]) + Fixture.attribute(8, Fixture.u32(0x08)))
            + newAddress(
                family: 10, prefix: 64, flags: 0x01, index: 1, attributes: Fixture.attribute(1, [0xfd] + [UInt8](repeating: 0, count: 14) + [3]))
            + newAddress(family: 2, prefix: 8, index: 1, sequence: 99, attributes: Fixture.attribute(2, [127, 0, 0, 1]))
            + newAddress(family: 2, prefix: 8, index: 1, attributes: Fixture.attribute(2, [127, 0]))
        let (addresses, progress) = try read(datagram)
        XCTAssertEqual(progress, .more)
        XCTAssertEqual(
            addresses,
            [
                InterfaceAddress(interfaceIndex: 2, address: IPAddress("10.0.0.1")!, prefixLength: 24),  // IFA_LOCAL wins over the peer
                InterfaceAddress(interfaceIndex: 2, address: IPAddress("10.0.0.2")!, prefixLength: 24, isSecondary: true),
                InterfaceAddress(interfaceIndex: 1, address: IPAddress("::1")!, prefixLength: 128, isTentative: true),  // IFA_FLAGS
                InterfaceAddress(interfaceIndex: 1, address: IPAddress("fd00::2")!, prefixLength: 64, isTentative: true),  // DAD failed
                InterfaceAddress(interfaceIndex: 1, address: IPAddress("fd00::3")!, prefixLength: 64),  // 0x01 is "temporary" for IPv6
            ])
    }

    func testDoneInterruptedAndErrors() throws {
        XCTAssertEqual(try read(Fixture.message(type: 3, sequence: 1, Fixture.u32(0))).1, .done)
        XCTAssertEqual(try read(Fixture.message(type: 3, flags: 0x10, sequence: 1, Fixture.u32(0))).1, .interrupted)
        XCTAssertThrowsError(try read(Fixture.error(-1, sequence: 1))) { error in
            XCTAssertEqual(error as? KernelError, .netlink(request: "RTM_GETADDR dump", errno: .notPermitted))
        }
    }

    func testChangeNotifications() {
        let added = newAddress(family: 2, prefix: 24, index: 2, attributes: Fixture.attribute(2, [10, 0, 0, 1]))
        let removed = Fixture.message(type: 21, [2, 24, 0, 0] + Fixture.u32(2))
        let other = Fixture.message(type: 16, [0, 0, 0, 0])
        for (datagram, expected) in [(added, true), (removed, true), (other, false)] {
            XCTAssertEqual(datagram.withUnsafeBytes { AddressMessages.announcesChange($0) }, expected)
        }
    }

    func testInMemorySourceMonitor() throws {
        let first = [InterfaceAddress(interfaceIndex: 1, address: .ipv4Loopback, prefixLength: 8)]
        let source = InMemoryAddressSource(first)
        let monitor = try source.makeMonitor()
        XCTAssertEqual(try monitor.nextSnapshot(), first)
        let second = first + [InterfaceAddress(interfaceIndex: 2, address: IPAddress("10.0.0.1")!, prefixLength: 24)]
        source.setAddresses(first)
        source.setAddresses(second)
        XCTAssertEqual(try monitor.nextSnapshot(), second, "a burst yields the latest snapshot")
        XCTAssertEqual(try source.addresses(), second)
        monitor.stop()
        XCTAssertNil(try monitor.nextSnapshot())
    }
}
