import RedirectCore
import XCTest

/// The lookup protocol's request parser and answer formatter, with good and hostile input.
final class LookupCodecTests: XCTestCase {
    private func parse(_ bytes: [UInt8]) -> Result<LookupRequest, LookupRequestError> {
        bytes.withUnsafeBytes { raw in Result { () throws(LookupRequestError) in try LookupRequest(utf8: raw) } }
    }

    private func assertRefused(_ line: String, _ expected: LookupRequestError, line source: UInt = #line) {
        XCTAssertEqual(parse(Array(line.utf8)), .failure(expected), line, line: source)
    }

    func testLookupRequestsOfBothFamiliesAndProtocols() throws {
        XCTAssertEqual(
            try LookupRequest(parsing: "LOOKUP tcp 192.0.2.2 40000 192.0.2.1 8080"),
            .lookup(
                proto: .tcp, client: Endpoint(IPAddress("192.0.2.2")!, 40000),
                local: Endpoint(IPAddress("192.0.2.1")!, 8080)))
        XCTAssertEqual(
            try LookupRequest(parsing: "lookup UDP 2001:db8:1::2 53 2001:db8:1::1 5353\r"),
            .lookup(
                proto: .udp, client: Endpoint(IPAddress("2001:db8:1::2")!, 53),
                local: Endpoint(IPAddress("2001:db8:1::1")!, 5353)))
        // Extra spaces between words are allowed; a v4-mapped peer counts as IPv4.
        XCTAssertEqual(
            try LookupRequest(parsing: "  LOOKUP  tcp ::ffff:192.0.2.2 0   192.0.2.1 65535 "),
            .lookup(
                proto: .tcp, client: Endpoint(IPAddress("192.0.2.2")!, 0),
                local: Endpoint(IPAddress("192.0.2.1")!, 65535)))
    }

    func testOtherCommandsRoundTrip() throws {
        let requests: [LookupRequest] = [
            .lookupDescriptor, .list(.text), .list(.json), .stats(.text), .stats(.json),
            .events(.text), .events(.json), .version,
            .lookup(
                proto: .udp, client: Endpoint(IPAddress("2001:db8::2")!, 1),
                local: Endpoint(IPAddress("2001:db8::1")!, 2)),
        ]
        for request in requests {
            XCTAssertEqual(try LookupRequest(parsing: request.line.dropLast()), request, request.line)
        }
    }

    func testMalformedRequestsSayWhy() {
        assertRefused("", .empty)
        assertRefused("   ", .empty)
        assertRefused("HELLO", .unknownCommand("HELLO"))
        assertRefused("LOOKUP tcp 192.0.2.2 40000 192.0.2.1", .argumentCount(command: "LOOKUP", expected: 5, got: 4))
        assertRefused("LOOKUP tcp 192.0.2.2 1 192.0.2.1 2 3", .argumentCount(command: "LOOKUP", expected: 5, got: 6))
        assertRefused("LOOKUP sctp 192.0.2.2 1 192.0.2.1 2", .badProtocol("sctp"))
        assertRefused("LOOKUP tcp 192.0.2.2 99999 192.0.2.1 8080", .badPort("99999"))
        assertRefused("LOOKUP tcp 192.0.2.2 -1 192.0.2.1 8080", .badPort("-1"))
        assertRefused("LOOKUP tcp 192.0.2.2 123456 192.0.2.1 8080", .badPort("123456"))
        assertRefused("LOOKUP tcp 192.0.2.2 1 2001:db8::1 8080", .mixedFamilies)
        assertRefused("LOOKUPFD 3", .argumentCount(command: "LOOKUPFD", expected: 0, got: 1))
        assertRefused("LIST XML", .badFormat(command: "LIST"))
        assertRefused("STATS JSON JSON", .badFormat(command: "STATS"))
        assertRefused("VERSION now", .argumentCount(command: "VERSION", expected: 0, got: 1))
    }

    func testBadAddressesAreRefused() {
        for address in [
            "192.0.2", "192.0.2.256", "192.0.2.01", "192.0.2.1.5", "1.2.3.4.", ".1.2.3", "1..2.3",
            "2001:db8:::1", "2001:db8::1::2", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", ":1:2:3:4:5:6:7",
            "12345::1", "g::1", "::1%eth0", "[::1]", "1:2:3:4:5:6:7:8::", "::ffff:1.2.3",
            "::1.2.3.4:5", String(repeating: "1", count: 60), "fe80::1:", "::-1",
        ] {
            assertRefused("LOOKUP tcp \(address) 1 192.0.2.1 2", .badAddress(String(address.prefix(64))))
        }
    }

    func testAddressTextMatchesRFC5952BothWays() {
        let cases = [
            "0.0.0.0", "255.255.255.255", "192.0.2.1", "::", "::1", "2001:db8::1", "2001:db8:0:1:1:1:1:1",
            "2001:0:0:1::1", "fe80::1:2", "1:2:3:4:5:6:7:8", "1::8", "1::7:8",
        ]
        for text in cases {
            XCTAssertEqual(IPAddress(text)?.description, text, text)
        }
        XCTAssertEqual(IPAddress("2001:DB8:0:0:0:0:0:1")?.description, "2001:db8::1")
        XCTAssertEqual(IPAddress("::2:3:4:5:6:7:8")?.description, "0:2:3:4:5:6:7:8")  // one zero group stays
        XCTAssertEqual(IPAddress("1:2:3:4:5:6:7::")?.description, "1:2:3:4:5:6:7:0")
        XCTAssertEqual(IPAddress("::ffff:192.0.2.1"), IPAddress("192.0.2.1"))
        XCTAssertEqual(IPAddress("64:ff9b::192.0.2.33")?.description, "64:ff9b::c000:221")
        XCTAssertEqual(IPAddress("1:2:3:4:5:6:1.2.3.4")?.description, "1:2:3:4:5:6:102:304")
    }

    func testOversizedLineIsRefusedBeforeItIsRead() {
        let long = "LOOKUP tcp 192.0.2.2 1 192.0.2.1 2" + String(repeating: " ", count: 600)
        assertRefused(long, .lineTooLong)
        assertRefused(String(repeating: "A", count: 100_000), .lineTooLong)
    }

    func testBinaryGarbageIsRefusedNeverTraps() {
        assertRefused("LOOKUP tcp 192.0.2.2\u{0} 1 192.0.2.1 2", .notPrintable)
        assertRefused("LOOKUP\ttcp 192.0.2.2 1 192.0.2.1 2", .notPrintable)
        assertRefused("LOOKUP tcp 192.0.2.2 1 192.0.2.1 2 é", .notPrintable)
        XCTAssertEqual(parse([0xff, 0xfe, 0x00, 0x80]), .failure(.notPrintable))
        // Random bytes: every outcome is a request or a reason, and no trap.
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<20_000 {
            let length = Int.random(in: 0...80, using: &generator)
            var bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            if Bool.random(using: &generator) {  // mostly-printable noise reaches the deeper parsers
                bytes = Array("LOOKUP tcp ".utf8) + bytes.map { 0x20 + $0 % 0x5f }
            }
            _ = parse(bytes)
        }
    }

    func testAnswersFormatAndParseBack() {
        let answers: [LookupAnswer] = [
            .original(Endpoint(IPAddress("203.0.113.10")!, 80)),
            .original(Endpoint(IPAddress("2001:db8:3::10")!, 443)),
            .notFound, .notRedirected, .expired, .denied, .busy,
            .badRequest("line longer than 512 bytes"),
        ]
        for answer in answers {
            XCTAssertTrue(answer.line.hasSuffix("\n"))
            XCTAssertEqual(LookupAnswer(parsing: answer.line.dropLast()), answer, answer.line)
        }
        XCTAssertEqual(LookupAnswer.original(Endpoint(IPAddress("2001:db8::1")!, 8080)).line, "OK 2001:db8::1 8080\n")
        var buffer: [UInt8] = []
        buffer.reserveCapacity(64)
        LookupAnswer.original(Endpoint(IPAddress("192.0.2.1")!, 0)).append(to: &buffer)
        LookupAnswer.notFound.append(to: &buffer)
        XCTAssertEqual(String(decoding: buffer, as: UTF8.self), "OK 192.0.2.1 0\nERR NOTFOUND\n")
        for garbage in ["", "OK", "OK 1.2.3.4", "OK 1.2.3.4 70000", "ERR", "ERR WHATEVER", "\u{0}"] {
            XCTAssertNil(LookupAnswer(parsing: garbage), garbage)
        }
    }
}
