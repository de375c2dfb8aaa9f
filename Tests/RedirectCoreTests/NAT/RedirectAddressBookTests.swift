import RedirectCore
import XCTest

/// The redirect address follows nf_nat_redirect.c: the incoming interface's primary IPv4
/// address, a usable IPv6 address of matching scope, loopback for local traffic.
final class RedirectAddressBookTests: XCTestCase {
    private let book = RedirectAddressBook([
        InterfaceAddress(interfaceIndex: 2, address: IPAddress("192.0.2.1")!, prefixLength: 24),
        InterfaceAddress(interfaceIndex: 2, address: IPAddress("192.0.2.9")!, prefixLength: 24, isSecondary: true),
        InterfaceAddress(interfaceIndex: 2, address: IPAddress("2001:db8:1::9")!, prefixLength: 64, isTentative: true),
        InterfaceAddress(interfaceIndex: 2, address: IPAddress("2001:db8:1::1")!, prefixLength: 64),
        InterfaceAddress(interfaceIndex: 2, address: IPAddress("fe80::1")!, prefixLength: 64),
        InterfaceAddress(interfaceIndex: 3, address: IPAddress("198.51.100.9")!, prefixLength: 24, isSecondary: true),
        InterfaceAddress(interfaceIndex: 3, address: IPAddress("198.51.100.1")!, prefixLength: 24),
    ])

    private func address(_ hook: PacketMetadata.Hook, _ interface: UInt32, _ destination: String) -> String? {
        book.redirectAddress(hook: hook, inputInterface: interface, originalDestination: IPAddress(destination)!)?.description
    }

    func testTheKernelsChoices() {
        XCTAssertEqual(address(.preRouting, 2, "203.0.113.10"), "192.0.2.1", "the primary address, not the secondary")
        XCTAssertEqual(address(.preRouting, 3, "203.0.113.10"), "198.51.100.1", "the first non-secondary, whatever the order")
        XCTAssertEqual(address(.preRouting, 2, "2001:db8:3::10"), "2001:db8:1::1", "a global destination: the first usable global address")
        XCTAssertEqual(address(.preRouting, 2, "fe80::77"), "fe80::1", "a link-local destination: a link-local address")
        XCTAssertNil(address(.preRouting, 3, "2001:db8:3::10"), "no IPv6 address on the interface: nowhere to send it")
        XCTAssertNil(address(.preRouting, 7, "203.0.113.10"), "an interface without addresses")
        XCTAssertEqual(address(.localOut, 0, "203.0.113.10"), "127.0.0.1")
        XCTAssertEqual(address(.localOut, 0, "2001:db8:3::10"), "::1")
    }

    func testTheEmptyBookOnlyAnswersLocalTraffic() {
        XCTAssertNil(RedirectAddressBook.empty.redirectAddress(hook: .preRouting, inputInterface: 2, originalDestination: IPAddress("203.0.113.10")!))
        XCTAssertEqual(
            RedirectAddressBook.empty.redirectAddress(hook: .localOut, inputInterface: 0, originalDestination: IPAddress("::2")!), .ipv6Loopback)
    }
}
