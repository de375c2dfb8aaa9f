import CConntrack
import Glibc
import RedirectCore
import XCTest

@testable import Kernel

/// The ctnetlink reader against messages libnetfilter_conntrack's own builder produces
/// (`nfct_nlmsg_build`), and against hand-cut malformed ones.
final class ConntrackMessagesTests: XCTestCase {
    private static let daemonMark: UInt32 = 0x0100_0000
    private static let markMask: UInt32 = 0x7f00_0000

    /// A TCP flow 10.0.0.1:40000 -> 10.0.0.2:80 redirected to 127.0.0.1:8080.
    private func redirectedTCP(_ ct: OpaquePointer) {
        nfct_set_attr_u8(ct, ATTR_L3PROTO, UInt8(AF_INET))
        nfct_set_attr_u8(ct, ATTR_L4PROTO, UInt8(IPPROTO_TCP))
        nfct_set_attr_u32(ct, ATTR_IPV4_SRC, UInt32(0x0a00_0001).bigEndian)
        nfct_set_attr_u32(ct, ATTR_IPV4_DST, UInt32(0x0a00_0002).bigEndian)
        nfct_set_attr_u16(ct, ATTR_PORT_SRC, UInt16(40000).bigEndian)
        nfct_set_attr_u16(ct, ATTR_PORT_DST, UInt16(80).bigEndian)
        nfct_set_attr_u8(ct, ATTR_REPL_L3PROTO, UInt8(AF_INET))
        nfct_set_attr_u8(ct, ATTR_REPL_L4PROTO, UInt8(IPPROTO_TCP))
        nfct_set_attr_u32(ct, ATTR_REPL_IPV4_SRC, UInt32(0x7f00_0001).bigEndian)
        nfct_set_attr_u32(ct, ATTR_REPL_IPV4_DST, UInt32(0x0a00_0001).bigEndian)
        nfct_set_attr_u16(ct, ATTR_REPL_PORT_SRC, UInt16(8080).bigEndian)
        nfct_set_attr_u16(ct, ATTR_REPL_PORT_DST, UInt16(40000).bigEndian)
        nfct_set_attr_u8(ct, ATTR_TCP_STATE, 3)  // TCP_CONNTRACK_ESTABLISHED
        nfct_set_attr_u32(ct, ATTR_MARK, 0x0100_0042)
        nfct_set_attr_u32(ct, ATTR_STATUS, UInt32(IPS_ASSURED.rawValue | IPS_SEEN_REPLY.rawValue | IPS_DST_NAT.rawValue))
    }

    /// One ctnetlink message: IPCTNL_MSG_CT_NEW (0) or _DELETE (2), built by the library.
    private func message(type: UInt16, flags: UInt16 = 0, family: Int32 = AF_INET, _ configure: (OpaquePointer) -> Void) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 4096)
        let length = bytes.withUnsafeMutableBytes { raw -> Int in
            let header = mnl_nlmsg_put_header(raw.baseAddress)!
            header.pointee.nlmsg_type = 1 << 8 | type
            header.pointee.nlmsg_flags = flags
            let generic = mnl_nlmsg_put_extra_header(header, MemoryLayout<nfgenmsg>.size)!.assumingMemoryBound(to: nfgenmsg.self)
            generic.pointee.nfgen_family = UInt8(family)
            let ct = nfct_new()!
            defer { nfct_destroy(ct) }
            configure(ct)
            XCTAssertEqual(nfct_nlmsg_build(header, ct), 0)
            return Int(header.pointee.nlmsg_len)
        }
        return Array(bytes[..<length])
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
            tcpState: .established, mark: 0x0100_0042, status: [.assured, .seenReply, .destinationNAT, .confirmed])  // the builder adds IPS_CONFIRMED
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
        let bytes = message(type: 0, flags: 0x600, family: AF_INET6) { ct in
            nfct_set_attr_u8(ct, ATTR_L3PROTO, UInt8(AF_INET6))
            nfct_set_attr_u8(ct, ATTR_L4PROTO, UInt8(IPPROTO_UDP))
            nfct_set_attr_u8(ct, ATTR_REPL_L3PROTO, UInt8(AF_INET6))
            nfct_set_attr_u8(ct, ATTR_REPL_L4PROTO, UInt8(IPPROTO_UDP))
            for (attribute, address) in [
                (ATTR_IPV6_SRC, client), (ATTR_IPV6_DST, server), (ATTR_REPL_IPV6_SRC, .ipv6Loopback), (ATTR_REPL_IPV6_DST, client),
            ] {
                var raw = [UInt8](repeating: 0, count: 16)
                raw.withUnsafeMutableBytes { address.write(to: $0, at: 0) }
                nfct_set_attr(ct, attribute, raw)
            }
            nfct_set_attr_u16(ct, ATTR_PORT_SRC, UInt16(5000).bigEndian)
            nfct_set_attr_u16(ct, ATTR_PORT_DST, UInt16(53).bigEndian)
            nfct_set_attr_u16(ct, ATTR_REPL_PORT_SRC, UInt16(5353).bigEndian)
            nfct_set_attr_u16(ct, ATTR_REPL_PORT_DST, UInt16(5000).bigEndian)
        }
        let expected = ConntrackEvent(
            kind: .new,
            original: FlowTuple(proto: .udp, source: Endpoint(client, 5000), destination: Endpoint(server, 53)),
            reply: FlowTuple(proto: .udp, source: Endpoint(.ipv6Loopback, 5353), destination: Endpoint(client, 5000)))
        XCTAssertEqual(read(bytes, markValue: 0, markMask: 0), [.event(expected)])
        XCTAssertEqual(read(bytes), [.filtered], "no CTA_MARK is mark 0, outside the daemon's mark")
        XCTAssertEqual(expected.description, "[NEW] udp [2001:db8::1]:5000 -> [2001:db8::2]:53 reply [::1]:5353 -> [2001:db8::1]:5000 mark 0x0")
    }

    func testOtherProtocolsMarksAndMessagesAreFiltered() {
        let icmp = message(type: 0) { ct in
            nfct_set_attr_u8(ct, ATTR_L3PROTO, UInt8(AF_INET))
            nfct_set_attr_u8(ct, ATTR_L4PROTO, UInt8(IPPROTO_ICMP))
            nfct_set_attr_u8(ct, ATTR_REPL_L3PROTO, UInt8(AF_INET))
            nfct_set_attr_u8(ct, ATTR_REPL_L4PROTO, UInt8(IPPROTO_ICMP))
            nfct_set_attr_u32(ct, ATTR_IPV4_SRC, 1)
            nfct_set_attr_u32(ct, ATTR_IPV4_DST, 2)
            nfct_set_attr_u32(ct, ATTR_REPL_IPV4_SRC, 2)
            nfct_set_attr_u32(ct, ATTR_REPL_IPV4_DST, 1)
            nfct_set_attr_u32(ct, ATTR_MARK, 0x0100_0000)
        }
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
        let noReply = message(type: 0) { ct in
            nfct_set_attr_u8(ct, ATTR_L3PROTO, UInt8(AF_INET))
            nfct_set_attr_u8(ct, ATTR_L4PROTO, UInt8(IPPROTO_TCP))
            nfct_set_attr_u32(ct, ATTR_IPV4_SRC, 1)
            nfct_set_attr_u32(ct, ATTR_IPV4_DST, 2)
            nfct_set_attr_u16(ct, ATTR_PORT_SRC, 1)
            nfct_set_attr_u16(ct, ATTR_PORT_DST, 2)
            nfct_set_attr_u32(ct, ATTR_MARK, 0x0100_0000)
        }
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
        XCTAssertEqual(ConntrackStatus.assured.rawValue, UInt32(IPS_ASSURED.rawValue))
        XCTAssertEqual(ConntrackStatus.seenReply.rawValue, UInt32(IPS_SEEN_REPLY.rawValue))
        XCTAssertEqual(ConntrackStatus.dying.rawValue, UInt32(IPS_DYING.rawValue))
        XCTAssertEqual(ConntrackStatus.offload.rawValue, UInt32(IPS_OFFLOAD.rawValue))
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
