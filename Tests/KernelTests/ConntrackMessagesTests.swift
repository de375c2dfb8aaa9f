import Glibc
import RedirectCore
import XCTest

@testable import Kernel

/// The ctnetlink reader against messages laid out as the kernel's ctnetlink_fill_info lays
/// them out (the root tests read the real kernel's), and against hand-cut malformed ones.
final class ConntrackMessagesTests: XCTestCase {
    private static let daemonMark: UInt32 = 0x0100_0000
    private static let markMask: UInt32 = 0x7f00_0000

    /// What a test message holds; a nil field is left out, as the kernel leaves out what an
    /// entry does not have.
    struct Entry {
        var proto: UInt8 = 6
        var original: (IPAddress, UInt16?, IPAddress, UInt16?)?
        var reply: (IPAddress, UInt16?, IPAddress, UInt16?)?
        var tcpState: UInt8?
        var mark: UInt32?
        var status: UInt32?
        var id: UInt32?
    }

    /// A TCP flow 10.0.0.1:40000 -> 10.0.0.2:80 redirected to 127.0.0.1:8080.
    private let redirectedTCP = Entry(
        proto: 6, original: (IPAddress("10.0.0.1")!, 40000, IPAddress("10.0.0.2")!, 80), reply: (.ipv4Loopback, 8080, IPAddress("10.0.0.1")!, 40000),
        tcpState: 3,  // TCP_CONNTRACK_ESTABLISHED
        mark: 0x0100_0042,
        status: 0x4 | 0x2 | 0x8 | 0x20,  // IPS_ASSURED | IPS_SEEN_REPLY | IPS_CONFIRMED | IPS_DST_NAT
        id: 77)

    /// One netlink attribute: header in host order, value, padding to 4 bytes.
    private static func attribute(_ type: UInt16, _ value: [UInt8], nested: Bool = false) -> [UInt8] {
        var bytes = withUnsafeBytes(of: UInt16(4 + value.count)) { Array($0) }
        bytes += withUnsafeBytes(of: type | (nested ? 0x8000 : 0)) { Array($0) }  // NLA_F_NESTED
        bytes += value
        while bytes.count % 4 != 0 { bytes.append(0) }
        return bytes
    }

    private static func bigEndian<T: FixedWidthInteger>(_ value: T) -> [UInt8] { withUnsafeBytes(of: value.bigEndian) { Array($0) } }

    /// CTA_TUPLE_IP { CTA_IP_V4/V6_SRC, _DST }, CTA_TUPLE_PROTO { CTA_PROTO_NUM, _SRC_PORT, _DST_PORT }.
    private static func tuple(_ type: UInt16, proto: UInt8, _ ends: (IPAddress, UInt16?, IPAddress, UInt16?)) -> [UInt8] {
        func address(_ address: IPAddress) -> [UInt8] {
            var raw = [UInt8](repeating: 0, count: address.isIPv4 ? 4 : 16)
            raw.withUnsafeMutableBytes { address.write(to: $0, at: 0) }
            return raw
        }
        let base: UInt16 = ends.0.isIPv4 ? 1 : 3
        let ip = attribute(base, address(ends.0)) + attribute(base + 1, address(ends.2))
        var ports = attribute(1, [proto])
        if let port = ends.1 { ports += attribute(2, bigEndian(port)) }
        if let port = ends.3 { ports += attribute(3, bigEndian(port)) }
        return attribute(type, attribute(1, ip, nested: true) + attribute(2, ports, nested: true), nested: true)
    }

    /// One ctnetlink message: IPCTNL_MSG_CT_NEW (0) or _DELETE (2); NLM_F_CREATE|NLM_F_EXCL is 0x600.
    private func message(type: UInt16, flags: UInt16 = 0, _ entry: Entry) -> [UInt8] {
        var attributes: [UInt8] = []
        if let original = entry.original { attributes += Self.tuple(1, proto: entry.proto, original) }
        if let reply = entry.reply { attributes += Self.tuple(2, proto: entry.proto, reply) }
        if let status = entry.status { attributes += Self.attribute(3, Self.bigEndian(status)) }
        if let state = entry.tcpState {
            attributes += Self.attribute(4, Self.attribute(1, Self.attribute(1, [state]), nested: true), nested: true)
        }
        if let mark = entry.mark { attributes += Self.attribute(8, Self.bigEndian(mark)) }
        if let id = entry.id { attributes += Self.attribute(12, Self.bigEndian(id)) }
        let family: UInt8 = entry.original.map { $0.0.isIPv4 ? UInt8(AF_INET) : UInt8(AF_INET6) } ?? UInt8(AF_INET)
        var bytes = withUnsafeBytes(of: UInt32(20 + attributes.count)) { Array($0) }
        bytes += withUnsafeBytes(of: UInt16(1 << 8) | type) { Array($0) }  // NFNL_SUBSYS_CTNETLINK
        bytes += withUnsafeBytes(of: flags) { Array($0) }
        bytes += [UInt8](repeating: 0, count: 8)  // sequence, port id
        bytes += [family, 0, 0, 0]  // nfgenmsg: family, NFNETLINK_V0, res_id
        return bytes + attributes
    }

    private func read(_ bytes: [UInt8], markValue: UInt32 = daemonMark, markMask: UInt32 = markMask, dumped: Bool = false)
        -> [ConntrackMessages.Outcome]
    {
        bytes.withUnsafeBytes { raw in
            NetlinkMessages(raw).map { ConntrackMessages.read($0, markValue: markValue, markMask: markMask, dumped: dumped) }
        }
    }

    func testNewUpdateAndDestroyOfARedirectedTCPFlow() throws {
        let expected = ConntrackEvent(
            kind: .new,
            original: FlowTuple(proto: .tcp, source: Endpoint(IPAddress("10.0.0.1")!, 40000), destination: Endpoint(IPAddress("10.0.0.2")!, 80)),
            reply: FlowTuple(proto: .tcp, source: Endpoint(.ipv4Loopback, 8080), destination: Endpoint(IPAddress("10.0.0.1")!, 40000)),
            tcpState: .established, mark: 0x0100_0042, status: [.assured, .seenReply, .destinationNAT, .confirmed], id: 77)
        // NLM_F_CREATE | NLM_F_EXCL: NEW; without: UPDATE; IPCTNL_MSG_CT_DELETE: DESTROY.
        XCTAssertEqual(read(message(type: 0, flags: 0x600, redirectedTCP)), [.event(expected)])
        var update = expected
        update.kind = .update
        XCTAssertEqual(read(message(type: 0, redirectedTCP)), [.event(update)])
        XCTAssertEqual(read(message(type: 0, flags: 0x600, redirectedTCP), dumped: true), [.event(update)], "dump replies are updates")
        var destroy = expected
        destroy.kind = .destroy
        XCTAssertEqual(read(message(type: 2, redirectedTCP)), [.event(destroy)])

        let event = expected
        XCTAssertTrue(event.isAssured)
        XCTAssertTrue(event.hasSeenReply)
        XCTAssertEqual(event.proto, .tcp)
        XCTAssertEqual(
            event.description,
            "[NEW] tcp 10.0.0.1:40000 -> 10.0.0.2:80 reply 127.0.0.1:8080 -> 10.0.0.1:40000 ESTABLISHED ASSURED mark 0x1000042")
    }

    func testIPv6UDPHasNoTCPStateAndNoMarkMeansZero() throws {
        let client = IPAddress("2001:db8::1")!
        let server = IPAddress("2001:db8::2")!
        let bytes = message(
            type: 0, flags: 0x600, Entry(proto: 17, original: (client, 5000, server, 53), reply: (.ipv6Loopback, 5353, client, 5000)))
        let expected = ConntrackEvent(
            kind: .new,
            original: FlowTuple(proto: .udp, source: Endpoint(client, 5000), destination: Endpoint(server, 53)),
            reply: FlowTuple(proto: .udp, source: Endpoint(.ipv6Loopback, 5353), destination: Endpoint(client, 5000)))
        XCTAssertEqual(read(bytes, markValue: 0, markMask: 0), [.event(expected)])
        XCTAssertEqual(read(bytes), [.filtered], "no CTA_MARK is mark 0, outside the daemon's mark")
        XCTAssertEqual(expected.description, "[NEW] udp [2001:db8::1]:5000 -> [2001:db8::2]:53 reply [::1]:5353 -> [2001:db8::1]:5000 mark 0x0")
    }

    func testOtherProtocolsMarksAndMessagesAreFiltered() {
        let icmp = message(
            type: 0,
            Entry(
                proto: 1, original: (IPAddress("10.0.0.1")!, nil, IPAddress("10.0.0.2")!, nil),
                reply: (IPAddress("10.0.0.2")!, nil, IPAddress("10.0.0.1")!, nil), mark: 0x0100_0000))
        XCTAssertEqual(read(icmp), [.filtered])
        XCTAssertEqual(read(message(type: 0, redirectedTCP), markValue: 0x0200_0000), [.filtered], "another mark")
        XCTAssertEqual(read(message(type: 1, redirectedTCP)), [.filtered], "IPCTNL_MSG_CT_GET is no event")
        var expectation = message(type: 0, redirectedTCP)
        expectation[5] = 2  // NFNL_SUBSYS_CTNETLINK_EXP: an expectation, not an entry
        XCTAssertEqual(read(expectation), [.filtered])
    }

    func testMalformedMessagesAreReportedNotTrusted() {
        let good = message(type: 0, redirectedTCP)
        // Cut short: nlmsg_len says more than the datagram holds.
        XCTAssertEqual(read(Array(good.dropLast(8))), [.malformed])
        // The first attribute (CTA_TUPLE_ORIG) claims more bytes than the message has.
        var overlong = good
        overlong[20] = 0xff
        overlong[21] = 0x0f
        XCTAssertEqual(read(overlong), [.malformed])
        // An attribute length below its own header.
        var tiny = good
        tiny[20] = 2
        tiny[21] = 0
        XCTAssertEqual(read(tiny), [.malformed])
        // No reply tuple.
        var withoutReply = redirectedTCP
        withoutReply.reply = nil
        let noReply = message(type: 0, withoutReply)
        var withoutPort = redirectedTCP
        withoutPort.reply?.1 = nil
        XCTAssertEqual(read(message(type: 0, withoutPort)), [.malformed], "a TCP tuple without its source port")
        XCTAssertEqual(read(noReply), [.malformed])
        // Only the nfgenmsg header, no attributes.
        var bare: [UInt8] = [20, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0]
        XCTAssertEqual(read(bare), [.malformed])
        bare[0] = 18
        XCTAssertEqual(read(bare), [.malformed], "no room for the nfgenmsg header")
    }

    func testSeveralMessagesInOneDatagram() {
        let datagram = message(type: 0, flags: 0x600, redirectedTCP) + message(type: 2, redirectedTCP)
        let kinds = read(datagram).compactMap { outcome -> ConntrackEvent.Kind? in
            if case .event(let event) = outcome { return event.kind }
            return nil
        }
        XCTAssertEqual(kinds, [.new, .destroy])
    }

    /// A bare netlink message of `type` (NLMSG_DONE 3, NLMSG_ERROR 2 with `error`).
    private func control(type: UInt16, sequence: UInt32, flags: UInt16 = 0, error: Int32? = nil) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: error == nil ? 20 : 36)
        bytes.withUnsafeMutableBytes { raw in
            raw.storeBytes(of: UInt32(raw.count), toByteOffset: 0, as: UInt32.self)
            raw.storeBytes(of: type, toByteOffset: 4, as: UInt16.self)
            raw.storeBytes(of: flags, toByteOffset: 6, as: UInt16.self)
            raw.storeBytes(of: sequence, toByteOffset: 8, as: UInt32.self)
            if let error { raw.storeBytes(of: error, toByteOffset: 16, as: Int32.self) }
        }
        return bytes
    }

    private func dumped(_ datagram: [UInt8], sequence: UInt32 = 7) throws -> (done: Bool, entries: [ConntrackEvent], interrupted: Bool) {
        var entries: [ConntrackEvent] = []
        var interrupted = false
        let done = try datagram.withUnsafeBytes { raw in
            try ConntrackMessages.readDump(
                datagram: raw, sequence: sequence, markValue: Self.daemonMark, markMask: Self.markMask, into: &entries,
                interrupted: &interrupted)
        }
        return (done, entries, interrupted)
    }

    private func withSequence(_ sequence: UInt32, flags: UInt16 = 0, _ bytes: [UInt8]) -> [UInt8] {
        var bytes = bytes
        bytes.withUnsafeMutableBytes { raw in
            raw.storeBytes(of: sequence, toByteOffset: 8, as: UInt32.self)
            raw.storeBytes(of: raw.load(fromByteOffset: 6, as: UInt16.self) | flags, toByteOffset: 6, as: UInt16.self)
        }
        return bytes
    }

    func testDumpDatagramsEndAtDoneAndReportInterruptionsAndErrors() throws {
        let entry = withSequence(7, flags: 0x2, message(type: 0, redirectedTCP))  // NLM_F_MULTI
        var result = try dumped(entry + withSequence(8, message(type: 0, redirectedTCP)))
        XCTAssertFalse(result.done)
        XCTAssertEqual(result.entries.map(\.kind), [.update], "another sequence's reply is not ours")
        result = try dumped(entry + control(type: 3, sequence: 7))
        XCTAssertTrue(result.done)
        XCTAssertEqual(result.entries.count, 1)
        XCTAssertFalse(result.interrupted)
        result = try dumped(withSequence(7, flags: 0x10, message(type: 0, redirectedTCP)) + control(type: 3, sequence: 7))
        XCTAssertTrue(result.done && result.interrupted, "NLM_F_DUMP_INTR")
        XCTAssertThrowsError(try dumped(control(type: 2, sequence: 7, error: -EOPNOTSUPP))) { error in
            XCTAssertEqual(error as? KernelError, .netlink(request: "conntrack dump (mark 0x1000000/0x7f000000)", errno: Errno(rawValue: EOPNOTSUPP)))
        }
        XCTAssertFalse(try dumped(control(type: 2, sequence: 7, error: 0)).done, "an ACK is not the end")
        var cut = entry
        cut[20] = 0xff
        XCTAssertThrowsError(try dumped(cut + control(type: 3, sequence: 7)), "an entry that does not read fails the dump") { error in
            XCTAssertTrue("\(error)".contains("does not parse"), "\(error)")
        }
    }

    func testAttributeWalkStopsAtImpossibleLengths() {
        let bytes: [UInt8] = [8, 0, 0x01, 0x80, 1, 2, 3, 4, 5, 0, 7, 0, 9, 0, 0, 0, 4, 0]
        bytes.withUnsafeBytes { raw in
            var walk = AttributeWalk(raw)
            let first = walk.next()
            XCTAssertEqual(first?.type, 1, "NLA_F_NESTED is masked off")
            XCTAssertEqual(first.map { Array($0.value) }, [1, 2, 3, 4])
            let second = walk.next()
            XCTAssertEqual(second?.type, 7)
            XCTAssertEqual(second.map { Array($0.value) }, [9], "5 bytes: one of value, padded to 8")
            XCTAssertNil(walk.next(), "two bytes left: no room for a header")
            XCTAssertTrue(walk.isMalformed)
        }
    }

    func testTCPStatesHaveTheKernelsNumbersAndNames() {
        XCTAssertEqual(ConntrackTCPState.allCases.map(\.rawValue), Array(0...9))
        XCTAssertEqual(ConntrackTCPState.synReceived.description, "SYN_RECV")
        XCTAssertEqual(ConntrackTCPState.timeWait.description, "TIME_WAIT")
        XCTAssertEqual(ConntrackTCPState.none.description, "NONE")
        XCTAssertEqual(ConntrackTCPState.synSent2.description, "SYN_SENT2")
        // The flow table keeps the kernel's states under the kernel's numbers and names.
        for state in ConntrackTCPState.allCases where state != .none && state != .synSent2 {
            XCTAssertEqual(FlowState(rawValue: state.rawValue)?.description, state.description)
        }
        // include/uapi/linux/netfilter/nf_conntrack_common.h: IPS_SEEN_REPLY_BIT 1, IPS_ASSURED_BIT 2, ...
        XCTAssertEqual(ConntrackStatus.seenReply.rawValue, 0x2)
        XCTAssertEqual(ConntrackStatus.assured.rawValue, 0x4)
        XCTAssertEqual(ConntrackStatus.dying.rawValue, 0x200)
        XCTAssertEqual(ConntrackStatus.offload.rawValue, 0x4000)
    }

    func testTableUsageParsesSysctlFiles() throws {
        XCTAssertEqual(ConntrackTableUsage.parse(Array("1234\n".utf8)), 1234)
        XCTAssertEqual(ConntrackTableUsage.parse(Array("0".utf8)), 0)
        XCTAssertNil(ConntrackTableUsage.parse(Array("".utf8)))
        XCTAssertNil(ConntrackTableUsage.parse(Array("-1\n".utf8)))
        XCTAssertNil(ConntrackTableUsage.parse(Array("12 34\n".utf8)))

        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("nfqr-ct-\(UInt32.random(in: 0 ... .max))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try "17\n".write(to: directory.appendingPathComponent("nf_conntrack_count"), atomically: true, encoding: .utf8)
        try "262144\n".write(to: directory.appendingPathComponent("nf_conntrack_max"), atomically: true, encoding: .utf8)
        XCTAssertEqual(try ConntrackTableUsage.read(directory: directory.path), ConntrackTableUsage(count: 17, limit: 262144))
        try "many\n".write(to: directory.appendingPathComponent("nf_conntrack_max"), atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ConntrackTableUsage.read(directory: directory.path)) { error in
            XCTAssertTrue("\(error)".contains("nf_conntrack_max holds no count: many"), "\(error)")
        }
        XCTAssertThrowsError(try ConntrackTableUsage.read(directory: directory.appendingPathComponent("absent").path)) { error in
            guard case KernelError.system(_, let errno) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(errno, Errno(rawValue: ENOENT))
        }
    }

    func testConfigurationIsCheckedBeforeAnySocketIsOpened() {
        for (configuration, words) in [
            (ConntrackEventsConfiguration(markValue: 0x1, markMask: 0x7f00_0000), "outside its mask"),
            (ConntrackEventsConfiguration(markValue: 0, markMask: 0, receiveBufferBytes: 0), "receive buffer 0 is out of range"),
            (ConntrackEventsConfiguration(markValue: 0, markMask: 0, eventsPerReceive: 0), "per receive 0 is out of range"),
        ] {
            XCTAssertThrowsError(try NetlinkConntrackEvents(configuration: configuration)) { error in
                guard case KernelError.invalidConfiguration(let text) = error else { return XCTFail("\(error)") }
                XCTAssertTrue(text.contains(words), text)
            }
        }
    }
}
