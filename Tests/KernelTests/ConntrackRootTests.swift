import Foundation
import RedirectCore
import XCTest

@testable import Kernel

/// Root-only: ctnetlink events and dumps against the real kernel, each test in a namespace of
/// its own (rules and conntrack entries go with it). Flows to the "marked" ports get the
/// daemon's mark in mangle OUTPUT, which nat OUTPUT saves to the conntrack mark and follows
/// with a REDIRECT, as the kernel-nat datapath's rules do.
final class ConntrackRootTests: XCTestCase {
    private static let mark: UInt32 = 0x0100_0000
    private static let mask: UInt32 = 0x7f00_0000
    private static let markText = "0x1000000/0x7f000000"

    override func setUpWithError() throws {
        guard ProcessInfo.processInfo.environment["NFQR_ROOT_TESTS"] == "1" else {
            throw XCTSkip("set NFQR_ROOT_TESTS=1 and run as root (network namespaces, iptables, ctnetlink); make test does both")
        }
        XCTAssertEqual(geteuid(), 0, "NFQR_ROOT_TESTS=1: the conntrack tests need root (network namespaces, iptables, ctnetlink)")
    }

    /// Marks `proto` to `port` and redirects it to `target` (the daemon's kernel-nat rules, in short).
    private func markAndRedirect(_ namespace: NetworkNamespace, _ tool: String, _ proto: String, port: UInt16, to target: UInt16) throws {
        try namespace.host([
            tool, "-w", "-t", "mangle", "-A", "OUTPUT", "-p", proto, "--dport", "\(port)", "-j", "MARK", "--set-xmark", Self.markText,
        ])
        try namespace.host([
            tool, "-w", "-t", "nat", "-A", "OUTPUT", "-p", proto, "--dport", "\(port)", "-m", "mark", "--mark", Self.markText,
            "-j", "CONNMARK", "--save-mark", "--mask", "0x7f000000",
        ])
        try namespace.host([
            tool, "-w", "-t", "nat", "-A", "OUTPUT", "-p", proto, "--dport", "\(port)", "-m", "mark", "--mark", Self.markText,
            "-j", "REDIRECT", "--to-ports", "\(target)",
        ])
    }

    /// Receives until `done` holds for everything received (5 s at most); no overrun allowed.
    private func collect(_ source: NetlinkConntrackEvents, into all: inout [ConntrackEvent], until done: ([ConntrackEvent]) -> Bool) throws {
        var batch: [ConntrackEvent] = []
        let deadline = ContinuousClock.now + .seconds(5)
        while !done(all), ContinuousClock.now < deadline {
            let result = try source.receive(into: &batch, timeoutMilliseconds: 250)
            XCTAssertNotEqual(result, .overrun)
            all += batch
        }
        XCTAssertTrue(done(all), "events so far:\n" + all.map(\.description).joined(separator: "\n"))
    }

    func testEventsAndDumpCarryOnlyTheMarkedFlows() throws {
        try NetworkNamespace.withNamespace { namespace in
            try namespace.run {
                try self.markAndRedirect(namespace, "iptables", "tcp", port: 7001, to: 7101)
                try self.markAndRedirect(namespace, "iptables", "udp", port: 7002, to: 7102)
                try self.markAndRedirect(namespace, "ip6tables", "udp", port: 7002, to: 7102)
                let source = try NetlinkConntrackEvents(configuration: ConntrackEventsConfiguration(markValue: Self.mark, markMask: Self.mask))
                XCTAssertGreaterThanOrEqual(source.receiveBufferBytes, 8 << 20, "SO_RCVBUFFORCE took the 8 MiB")

                // Unmarked flows first: TCP and UDP that no rule marks.
                try TestSocket.tcpExchange(connectTo: 7003, listenOn: 7003)
                try TestSocket.udpExchange(family: AF_INET, sendTo: 7004, receiveOn: 7004)
                var batch: [ConntrackEvent] = []
                XCTAssertEqual(try source.receive(into: &batch, timeoutMilliseconds: 300), .timedOut, "unmarked flows: \(batch)")

                // Marked: a TCP connection redirected 7001 -> 7101, UDP 7002 -> 7102 over IPv4 and IPv6.
                try TestSocket.tcpExchange(connectTo: 7001, listenOn: 7101)
                try TestSocket.udpExchange(family: AF_INET, sendTo: 7002, receiveOn: 7102)
                try TestSocket.udpExchange(family: AF_INET6, sendTo: 7002, receiveOn: 7102)
                var events: [ConntrackEvent] = []
                let tcp = { (event: ConntrackEvent) in event.proto == .tcp }
                try self.collect(source, into: &events) { all in
                    all.contains { tcp($0) && $0.kind == .new }
                        && all.contains { tcp($0) && $0.tcpState == .established && $0.isAssured }
                        && all.contains { tcp($0) && $0.tcpState == .timeWait }
                        && all.filter { !tcp($0) && $0.kind == .new }.count == 2
                        && all.filter { !tcp($0) && $0.kind == .update && $0.hasSeenReply }.count == 2
                }
                for event in events {
                    XCTAssertEqual(event.mark & Self.mask, Self.mark, "\(event)")
                    XCTAssertTrue([7001, 7002].contains(event.original.destination.port), "only marked flows: \(event)")
                    XCTAssertEqual(event.reply.destination, event.original.source, "\(event)")
                }
                let tcpNew = try XCTUnwrap(events.first { tcp($0) && $0.kind == .new })
                XCTAssertEqual(tcpNew.original.destination, Endpoint(.ipv4Loopback, 7001))
                XCTAssertEqual(tcpNew.reply.source, Endpoint(.ipv4Loopback, 7101), "the reply tuple names the REDIRECT target")
                XCTAssertEqual(tcpNew.tcpState, .synSent)
                XCTAssertTrue(tcpNew.status.contains(.destinationNAT))
                let states = events.filter(tcp).compactMap(\.tcpState)
                XCTAssertEqual(states.first, .synSent)
                XCTAssertTrue(states.contains(.synReceived) && states.contains(.established), "\(states)")
                let udpNew = events.filter { !tcp($0) && $0.kind == .new }
                XCTAssertEqual(Set(udpNew.map(\.reply.source)), [Endpoint(.ipv4Loopback, 7102), Endpoint(.ipv6Loopback, 7102)])
                XCTAssertTrue(udpNew.allSatisfy { $0.tcpState == nil })

                // The dump: the kernel selects the three marked entries out of five.
                let dumped = try source.dump(markValue: Self.mark, markMask: Self.mask)
                XCTAssertEqual(dumped.count, 3, dumped.map(\.description).joined(separator: "\n"))
                XCTAssertTrue(dumped.allSatisfy { $0.kind == .update && $0.mark & Self.mask == Self.mark })
                XCTAssertEqual(
                    Set(dumped.map(\.original)), Set(events.filter { $0.kind == .new }.map(\.original)), "the same flows as the NEW events")
                XCTAssertEqual(dumped.first(where: tcp)?.tcpState, .timeWait)
                XCTAssertEqual(try source.dump(markValue: 0, markMask: 0).count, 5, "without a mark: every entry")
                XCTAssertEqual(try source.dump(markValue: 0x0200_0000, markMask: Self.mask), [])

                // DESTROY: conntrack -D of everything; the two unmarked deletions send nothing.
                for family in ["ipv4", "ipv6"] {
                    try namespace.host(["conntrack", "-D", "-f", family])
                }
                events = []
                try self.collect(source, into: &events) { all in all.filter { $0.kind == .destroy }.count == 3 }
                XCTAssertTrue(events.allSatisfy { $0.kind == .destroy && [7001, 7002].contains($0.original.destination.port) }, "\(events)")
                XCTAssertEqual(try source.receive(into: &batch, timeoutMilliseconds: 300), .timedOut, "nothing else: \(batch)")
                XCTAssertEqual(try source.dump(markValue: Self.mark, markMask: Self.mask), [])

                let counters = source.counters
                XCTAssertEqual(counters.filtered, 0, "the kernel's filter dropped the unmarked flows' events before they were queued")
                XCTAssertEqual(counters.overruns, 0)
                XCTAssertEqual(counters.parseErrors, 0)
                XCTAssertGreaterThanOrEqual(counters.received, 12)

                DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(50)) { source.interrupt() }
                XCTAssertEqual(try source.receive(into: &batch, timeoutMilliseconds: 5000), .interrupted)
            }
        }
    }

    /// Kernel-nat mode's subscription: any bit of the mask set (one value per port), the
    /// kernel's timeout in every event, and one entry asked for by its tuple.
    func testAnyMarkBitFilterTimeoutsAndOneEntryByTuple() throws {
        try NetworkNamespace.withNamespace { namespace in
            try namespace.run {
                try self.markAndRedirect(namespace, "iptables", "udp", port: 7012, to: 7112)
                let source = try NetlinkConntrackEvents(
                    configuration: ConntrackEventsConfiguration(markValue: 0, markMask: Self.mask, negated: true))
                try TestSocket.udpExchange(family: AF_INET, sendTo: 7014, receiveOn: 7014)
                var batch: [ConntrackEvent] = []
                XCTAssertEqual(try source.receive(into: &batch, timeoutMilliseconds: 300), .timedOut, "unmarked: \(batch)")
                try TestSocket.udpExchange(family: AF_INET, sendTo: 7012, receiveOn: 7112)
                var events: [ConntrackEvent] = []
                try self.collect(source, into: &events) { all in all.contains { $0.kind == .new } && all.contains { $0.hasSeenReply } }
                XCTAssertTrue(events.allSatisfy { $0.original.destination.port == 7012 }, "\(events)")
                let timeout = try XCTUnwrap(events.first?.timeout, "CTA_TIMEOUT in the NEW event")
                XCTAssertTrue((1...120).contains(timeout), "\(timeout)")

                let reply = try XCTUnwrap(events.first?.reply)
                let entry = try XCTUnwrap(try source.entry(reply: reply))
                XCTAssertEqual(entry.reply.source, Endpoint(.ipv4Loopback, 7112))
                XCTAssertEqual(entry.mark & Self.mask, Self.mark)
                XCTAssertNotNil(entry.timeout)
                var absent = reply
                absent.destination.port = absent.destination.port &+ 1
                XCTAssertNil(try source.entry(reply: absent), "no such entry: nil, not an error")
                try namespace.host(["conntrack", "-D", "-f", "ipv4"])
                XCTAssertNil(try source.entry(reply: reply), "deleted")
            }
        }
    }

    func testOverrunIsReportedAndADumpRecovers() throws {
        try NetworkNamespace.withNamespace { namespace in
            try namespace.run {
                try self.markAndRedirect(namespace, "iptables", "udp", port: 7200, to: 7201)
                // The smallest buffer the kernel allows (it raises 1 B to a few KiB): a few events.
                let source = try NetlinkConntrackEvents(
                    configuration: ConntrackEventsConfiguration(markValue: Self.mark, markMask: Self.mask, receiveBufferBytes: 1))
                XCTAssertLessThan(source.receiveBufferBytes, 16 * 1024)
                let flows = 200
                let listener = try TestSocket(family: AF_INET, type: SOCK_DGRAM, port: 7201)
                // All open at once, so each has a port of its own: one entry each.
                let clients = try (0..<flows).map { _ in try TestSocket(family: AF_INET, type: SOCK_DGRAM, port: 0) }
                for client in clients { try client.send("x", toPort: 7200) }

                var batch: [ConntrackEvent] = []
                var results: [ConntrackReceiveResult] = []
                while results.last != .overrun, results.last != .timedOut {
                    results.append(try source.receive(into: &batch, timeoutMilliseconds: 1000))
                }
                XCTAssertEqual(results.last, .overrun, "\(results)")
                XCTAssertEqual(source.counters.overruns, 1)
                XCTAssertLessThan(source.counters.received, UInt64(flows))

                let dumped = try source.dump(markValue: Self.mark, markMask: Self.mask)
                XCTAssertEqual(dumped.count, flows, "the dump has every flow the lost events announced")
                XCTAssertEqual(Set(dumped.map(\.original.source.port)).count, flows)
                XCTAssertTrue(dumped.allSatisfy { $0.reply.source == Endpoint(.ipv4Loopback, 7201) })
                _ = listener
            }
        }
    }

    /// A burst of unmarked flows (a SYN flood's shape: many new entries) never wakes the
    /// receiver, and a burst of marked ones fits the default 8 MiB buffer without an overrun.
    func testUnmarkedBurstIsDroppedInTheKernelAndAMarkedBurstFits() throws {
        try NetworkNamespace.withNamespace { namespace in
            try namespace.run {
                // Marked: UDP to ports 20000-29999 (mark, then saved to the entry in mangle itself).
                try namespace.host([
                    "iptables", "-w", "-t", "mangle", "-A", "OUTPUT", "-p", "udp", "--dport", "20000:29999", "-j", "MARK", "--set-xmark",
                    Self.markText,
                ])
                try namespace.host(["iptables", "-w", "-t", "mangle", "-A", "OUTPUT", "-j", "CONNMARK", "--save-mark", "--mask", "0x7f000000"])
                let source = try NetlinkConntrackEvents(configuration: ConntrackEventsConfiguration(markValue: Self.mark, markMask: Self.mask))
                let sender = try TestSocket(family: AF_INET, type: SOCK_DGRAM, port: 0)
                let flows = 5000
                var batch: [ConntrackEvent] = []

                // One new entry per destination port; nothing listens (the ICMP errors are RELATED, no entries).
                var started = ContinuousClock.now
                for port in 0..<flows { try sender.send("x", toPort: UInt16(30000 + port)) }
                let unmarkedSend = ContinuousClock.now - started
                XCTAssertEqual(try source.receive(into: &batch, timeoutMilliseconds: 300), .timedOut, "\(batch.count) events")
                XCTAssertEqual(source.counters, ConntrackEventCounters(), "nothing reached the socket")

                started = ContinuousClock.now
                for port in 0..<flows { try sender.send("x", toPort: UInt16(20000 + port)) }
                let markedSend = ContinuousClock.now - started
                var received = 0
                var receives = 0
                started = ContinuousClock.now
                while received < flows {
                    let result = try source.receive(into: &batch, timeoutMilliseconds: 2000)
                    guard result == .received else { return XCTFail("\(result) after \(received) events") }
                    XCTAssertTrue(batch.allSatisfy { $0.kind == .new && $0.original.destination.port >= 20000 })
                    received += batch.count
                    receives += 1
                }
                let reading = ContinuousClock.now - started
                XCTAssertEqual(source.counters.received, UInt64(flows))
                XCTAssertEqual(source.counters.overruns, 0)
                XCTAssertEqual(try ConntrackTableUsage.read().count, 2 * flows)
                print(
                    "conntrack burst: \(flows) unmarked flows sent in \(unmarkedSend), 0 events; \(flows) marked sent in \(markedSend),",
                    "their NEW events read in \(reading) by \(receives) receives")
            }
        }
    }

    func testTableUsageReadsTheNamespacesCounts() throws {
        try NetworkNamespace.withNamespace { namespace in
            try namespace.run {
                try self.markAndRedirect(namespace, "iptables", "udp", port: 7300, to: 7301)
                let before = try ConntrackTableUsage.read()
                let listener = try TestSocket(family: AF_INET, type: SOCK_DGRAM, port: 7301)
                let clients = try (0..<3).map { _ in try TestSocket(family: AF_INET, type: SOCK_DGRAM, port: 0) }
                for client in clients { try client.send("x", toPort: 7300) }
                let after = try ConntrackTableUsage.read()
                XCTAssertEqual(after.count - before.count, 3)
                XCTAssertGreaterThan(after.limit, 0)
                _ = listener
            }
        }
    }
}

/// A socket on the loopback address of its family (127.0.0.1 or ::1), for the root tests.
final class TestSocket {
    let fd: CInt
    let family: CInt

    init(family: CInt, type: __socket_type, port: UInt16) throws {
        self.family = family
        fd = socket(family, CInt(type.rawValue) | CInt(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
        if port != 0 {
            // Not for ephemeral ports: UDP sockets that all allow reuse may be given the same one.
            var one: CInt = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<CInt>.size))
        }
        guard try withAddress(port: port, { bind(fd, $0, $1) }) == 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
    }

    deinit { close(fd) }

    private func withAddress(port: UInt16, _ body: (UnsafePointer<sockaddr>, socklen_t) -> CInt) throws -> CInt {
        if family == AF_INET6 {
            var address = sockaddr_in6()
            address.sin6_family = sa_family_t(AF_INET6)
            address.sin6_port = port.bigEndian
            address.sin6_addr = in6addr_loopback
            return withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
            }
        }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
    }

    func connect(toPort port: UInt16) throws {
        guard try withAddress(port: port, { Glibc.connect(fd, $0, $1) }) == 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
    }

    func send(_ text: String, toPort port: UInt16) throws {
        let bytes = Array(text.utf8)
        guard try withAddress(port: port, { CInt(sendto(fd, bytes, bytes.count, 0, $0, $1)) }) == bytes.count else {
            throw POSIXError(.init(rawValue: errno) ?? .EIO)
        }
    }

    /// One datagram or stream read, waiting at most 2 s.
    func receive() throws -> String {
        var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&descriptor, 1, 2000) == 1 else { throw POSIXError(.ETIMEDOUT) }
        var buffer = [UInt8](repeating: 0, count: 2048)
        let count = recv(fd, &buffer, buffer.count, 0)
        guard count >= 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
        return String(decoding: buffer[0..<count], as: UTF8.self)
    }

    /// A TCP connection to `connectTo` that a listener on `listenOn` accepts (the REDIRECT
    /// target, or the same port when nothing redirects), one byte each way, then closed by the
    /// client first (so the entry ends in TIME_WAIT).
    static func tcpExchange(connectTo: UInt16, listenOn: UInt16) throws {
        let listener = try TestSocket(family: AF_INET, type: SOCK_STREAM, port: listenOn)
        guard listen(listener.fd, 4) == 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
        let client = try TestSocket(family: AF_INET, type: SOCK_STREAM, port: 0)
        try client.connect(toPort: connectTo)
        let accepted = accept(listener.fd, nil, nil)
        guard accepted >= 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
        defer { close(accepted) }
        guard write(client.fd, "q", 1) == 1 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
        var byte: UInt8 = 0
        guard read(accepted, &byte, 1) == 1, write(accepted, "a", 1) == 1 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
        XCTAssertEqual(try client.receive(), "a")
        shutdown(client.fd, CInt(SHUT_WR))
        guard read(accepted, &byte, 1) == 0 else { throw POSIXError(.EPROTO) }  // the client's FIN
        shutdown(accepted, CInt(SHUT_WR))
        XCTAssertEqual(try client.receive(), "", "the server's FIN")
    }

    /// A datagram to `sendTo` received on `receiveOn`, answered, and the answer received.
    static func udpExchange(family: CInt, sendTo: UInt16, receiveOn: UInt16) throws {
        let server = try TestSocket(family: family, type: SOCK_DGRAM, port: receiveOn)
        let client = try TestSocket(family: family, type: SOCK_DGRAM, port: 0)
        try client.connect(toPort: sendTo)
        guard write(client.fd, "q", 1) == 1 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
        var from = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        var byte: UInt8 = 0
        var descriptor = pollfd(fd: server.fd, events: Int16(POLLIN), revents: 0)
        guard poll(&descriptor, 1, 2000) == 1 else { throw POSIXError(.ETIMEDOUT) }
        let received = withUnsafeMutablePointer(to: &from) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(server.fd, &byte, 1, 0, $0, &length) }
        }
        guard received == 1 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
        let answered = withUnsafePointer(to: &from) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(server.fd, "a", 1, 0, $0, length) }
        }
        guard answered == 1 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
        XCTAssertEqual(try client.receive(), "a", "the answer comes back from the original port")
    }
}
