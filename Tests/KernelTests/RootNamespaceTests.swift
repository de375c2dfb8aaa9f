import Foundation
import RedirectCore
import XCTest

@testable import Kernel

/// Root-only tests against the real kernel, each in its own network namespace.
final class RootNamespaceTests: XCTestCase {
    override func setUpWithError() throws {
        // Only with NFQR_ROOT_TESTS=1, which `make test` sets (and runs as root): there a non-root
        // run fails rather than pretend these passed. Elsewhere (a laptop, any user, root
        // included) they are skipped with the reason, so `swift test` touches no firewall.
        guard ProcessInfo.processInfo.environment["NFQR_ROOT_TESTS"] == "1" else {
            throw XCTSkip("set NFQR_ROOT_TESTS=1 and run as root (network namespaces, NFQUEUE, iptables, BPF); make test does both")
        }
        XCTAssertEqual(geteuid(), 0, "NFQR_ROOT_TESTS=1: the kernel tests need root (network namespaces, NFQUEUE, iptables)")
    }

    func testSpawnedProgramsInheritTheThreadsNamespace() throws {
        try NetworkNamespace.withNamespace { namespace in
            let inside = try namespace.run { try namespace.host(["stat", "-L", "-c", "%i", "/proc/self/ns/net"]) }
            let outside = try namespace.host(["stat", "-L", "-c", "%i", "/proc/self/ns/net"])
            XCTAssertEqual(UInt64(inside.trimmingCharacters(in: .whitespacesAndNewlines)), namespace.inode)
            XCTAssertNotEqual(inside, outside)
        }
    }

    // (a) rules: install, idempotent re-install, removal.
    func testRuleInstallerIsIdempotentAndRemovesEverything() throws {
        try NetworkNamespace.withNamespace { namespace in
            try namespace.run {
                let installer = IptablesRuleInstaller()
                let rule = try RedirectRule(parsing: "tcp:80:8080", scope: .network)
                let local = try RedirectRule(parsing: "udp:53:5353", scope: .local)
                let configuration = RuleSetConfiguration(
                    rules: [rule, local], firstQueue: 10, failOpen: true, excludedMarks: [FirewallMark(value: 1, mask: 1)], excludedUserIDs: [1234])
                try installer.checkAvailable(for: configuration)
                try installer.install(configuration)
                let first = try namespace.host(["iptables-save"]) + (try namespace.host(["ip6tables-save"]))
                for expected in [
                    "-A PREROUTING -j NFQR-PREROUTING", "-A OUTPUT -j NFQR-OUTPUT", "-A OUTPUT -j NFQR-REPLY",
                    "-A NFQR-PREROUTING -p tcp -m tcp --dport 80 -j NFQUEUE --queue-num 10 --queue-bypass",
                    "-A NFQR-PREROUTING -p tcp -m tcp --dport 8080 -j NFQUEUE --queue-num 10 --queue-bypass",
                    "-A NFQR-REPLY -p tcp -m tcp --sport 8080 -j NFQUEUE --queue-num 11",
                    "-A NFQR-OUTPUT -p udp -m udp --dport 53 -j NFQUEUE --queue-num 10 --queue-bypass",
                    "-A NFQR-OUTPUT -m owner --uid-owner 1234 -j RETURN",
                    "-A NFQR-OUTPUT -m mark --mark 0x1/0x1 -j RETURN",
                ] {
                    XCTAssertEqual(first.components(separatedBy: expected + "\n").count - 1, 2, "\(expected) once per family in:\n\(first)")
                }
                // Related traffic: the ICMP errors, not echo, in each chain with rules of its scope.
                for expected in [
                    "-A NFQR-PREROUTING -p icmp -m icmp --icmp-type 3 -j NFQUEUE --queue-num 10 --queue-bypass",
                    "-A NFQR-OUTPUT -p icmp -m icmp --icmp-type 11 -j NFQUEUE --queue-num 10 --queue-bypass",
                    "-A NFQR-REPLY -p icmp -m icmp --icmp-type 12 -j NFQUEUE --queue-num 11 --queue-bypass",
                    "-A NFQR-PREROUTING -p ipv6-icmp -m icmp6 --icmpv6-type 2 -j NFQUEUE --queue-num 10 --queue-bypass",
                    "-A NFQR-REPLY -p ipv6-icmp -m icmp6 --icmpv6-type 1 -j NFQUEUE --queue-num 11 --queue-bypass",
                ] {
                    XCTAssertEqual(first.components(separatedBy: expected + "\n").count - 1, 1, "\(expected) once in:\n\(first)")
                }
                XCTAssertFalse(first.contains("--icmp-type 8 ") || first.contains("--icmpv6-type 128 ") || first.contains("--icmpv6-type 135 "))
                try installer.install(configuration)
                let second = try namespace.host(["iptables-save"]) + (try namespace.host(["ip6tables-save"]))
                XCTAssertEqual(Self.ruleLines(second), Self.ruleLines(first), "a second install changes nothing")

                try installer.remove()
                let after = try namespace.host(["iptables-save"]) + (try namespace.host(["ip6tables-save"]))
                XCTAssertFalse(after.contains("NFQR"), after)
                try installer.remove()  // removing twice is fine
            }
        }
    }

    // (a') kernel-nat mode's rules: a change of mode, jumps with matches, an earlier form replaced.
    func testRuleInstallerSwitchesModesAndReplacesEarlierJumps() throws {
        try NetworkNamespace.withNamespace { namespace in
            try namespace.run {
                let installer = IptablesRuleInstaller()
                var configuration = RuleSetConfiguration(rules: [try RedirectRule(parsing: "tcp:80:8080", scope: .network)])
                try installer.install(configuration)
                configuration.kernelNAT = KernelNATMarks(mask: 0x0ff0_0000, ports: [8080])
                // An operator's rule above where the jump will go, and a jump in an earlier form.
                _ = try namespace.host(["iptables", "-w", "-t", "raw", "-N", "NFQR-EV-PREROUTING"])
                _ = try namespace.host(["iptables", "-w", "-t", "raw", "-I", "PREROUTING", "1", "-j", "NFQR-EV-PREROUTING"])
                try installer.install(configuration)
                _ = try namespace.host(["iptables", "-w", "-t", "mangle", "-I", "PREROUTING", "1", "-s", "192.0.2.9", "-j", "ACCEPT"])
                try installer.install(configuration)
                let saved = try namespace.host(["iptables-save"])
                for absent in ["NFQR-PREROUTING", "NFQR-OUTPUT", "NFQR-REPLY", "-A PREROUTING -j NFQR-EV-PREROUTING"] {
                    XCTAssertFalse(saved.contains(absent), "\(absent) in:\n\(saved)")
                }
                let jumps = saved.split(separator: "\n").filter { $0.hasPrefix("-A PREROUTING") || $0.hasPrefix("-A OUTPUT") }
                // iptables-save prints mangle, raw, nat; the operator's rule stays above the jump.
                XCTAssertEqual(
                    jumps.map(String.init),
                    [
                        "-A PREROUTING -s 192.0.2.9/32 -j ACCEPT",
                        "-A PREROUTING -m connmark --mark 0x0/0xff00000 -m conntrack --ctstate NEW -j NFQR-NEW-PREROUTING",
                        "-A OUTPUT -m connmark --mark 0x0/0xff00000 -m conntrack --ctstate NEW -j NFQR-NEW-OUTPUT",
                        "-A PREROUTING -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j NFQR-EV-PREROUTING",
                        "-A OUTPUT -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j NFQR-EV-OUTPUT",
                        "-A PREROUTING -j NFQR-NAT-PREROUTING", "-A OUTPUT -j NFQR-NAT-OUTPUT",
                    ], "one jump each, the earlier form gone, in:\n\(saved)")
                XCTAssertEqual(try installer.missing(configuration, orNftTable: false), [])
                try installer.remove()
                let after = try namespace.host(["iptables-save"]) + (try namespace.host(["ip6tables-save"]))
                XCTAssertFalse(after.contains("NFQR"), after)
            }
        }
    }

    // (b) a real queue: batch receive, a rewritten accept, a drop, batch-verdict accepts.
    func testNetfilterQueueRewritesDropsAndAccepts() throws {
        try withLocalUDP(toPort: 5555, queuedTo: 7) {
            var configuration = NetfilterQueueConfiguration(queueNumber: 7)
            configuration.batchCapacity = 16
            let queue = try NetfilterQueue(configuration: configuration)
            XCTAssertThrowsError(try NetfilterQueue(configuration: configuration)) { error in
                guard case KernelError.netlink(_, let errno) = error else { return XCTFail("\(error)") }
                XCTAssertEqual(errno, .notPermitted, "the kernel answers EPERM for a queue another socket holds")
            }

            let original = try UDPSocket(port: 5555)
            let redirected = try UDPSocket(port: 5556)
            let sender = try UDPSocket(port: 0)
            for text in ["rewrite", "drop", "keep-1", "keep-2"] { try sender.send(text, toPort: 5555) }

            let batch = queue.makeBatch()
            XCTAssertEqual(try queue.receive(into: batch, timeoutMilliseconds: 2000), .received)
            XCTAssertEqual(batch.count, 4, "every datagram was queued before receive, so one wakeup takes them all")
            for index in 0..<batch.count {
                let packet = batch[index]
                XCTAssertEqual(packet.hardwareProtocol, 0x0800)
                XCTAssertEqual(packet.netfilterHook, .localOut)
                XCTAssertFalse(packet.isTruncated)
                switch UDPPacket.text(packet.payload) {
                case "rewrite":
                    UDPPacket.setDestinationPort(5556, in: packet.payload)
                    batch[index].verdict = .acceptModified
                case "drop":
                    batch[index].verdict = .drop
                default:
                    break
                }
            }
            let statistics = try NetfilterQueueKernelStatistics.read().first { $0.queueNumber == 7 }
            XCTAssertEqual(statistics?.portID, queue.portID)
            XCTAssertEqual(statistics?.copyMode, 2)
            XCTAssertEqual(statistics?.queueTotal, 4)
            try queue.sendVerdicts(for: batch)

            XCTAssertEqual(redirected.receiveAll(waitMilliseconds: 500), ["rewrite"])
            XCTAssertEqual(original.receiveAll(waitMilliseconds: 500).sorted(), ["keep-1", "keep-2"])
            let counters = queue.counters
            XCTAssertEqual(counters.received, 4)
            XCTAssertEqual(counters.batches, 1)
            XCTAssertEqual(counters.acceptedModified, 1)
            XCTAssertEqual(counters.dropped, 1)
            XCTAssertEqual(counters.acceptedUnmodified, 2)
            XCTAssertEqual(counters.batchVerdictMessages, 1)
            XCTAssertEqual(counters.parseErrors, 0)
            XCTAssertEqual(try NetfilterQueueKernelStatistics.read().first { $0.queueNumber == 7 }?.queueTotal, 0)

            // Nothing pending: a receive times out, and an interrupt wakes it.
            XCTAssertEqual(try queue.receive(into: batch, timeoutMilliseconds: 50), .timedOut)
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(50)) { queue.interrupt() }
            XCTAssertEqual(try queue.receive(into: batch, timeoutMilliseconds: 5000), .interrupted)
            queue.interrupt()
            XCTAssertEqual(try queue.receive(into: batch, timeoutMilliseconds: 5000), .interrupted, "an interrupt before the receive counts too")
            XCTAssertEqual(queue.counters.netlinkErrors, 0, "the kernel accepted every verdict")
        }
    }

    // (b2) busy polling: a packet sent while the thread polls is received, an idle
    // queue still times out, and an interrupt still ends the receive.
    func testBusyPollingQueueReceivesTimesOutAndIsInterrupted() throws {
        try withLocalUDP(toPort: 5557, queuedTo: 8) {
            var configuration = NetfilterQueueConfiguration(queueNumber: 8)
            configuration.busyPollMicroseconds = 100_001
            XCTAssertThrowsError(try NetfilterQueue(configuration: configuration)) { error in
                XCTAssertTrue("\(error)".contains("out of range"), "\(error)")
            }
            configuration.busyPollMicroseconds = 20_000
            let queue = try NetfilterQueue(configuration: configuration)
            let listener = try UDPSocket(port: 5557)
            let sender = try UDPSocket(port: 0)
            let batch = queue.makeBatch()

            // Sent 5 ms into the receive: inside the 20 ms of polling.
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(5)) { try? sender.send("polled", toPort: 5557) }
            XCTAssertEqual(try queue.receive(into: batch, timeoutMilliseconds: 5000), .received)
            XCTAssertEqual(batch.count, 1)
            try queue.sendVerdicts(for: batch)
            XCTAssertEqual(listener.receiveAll(waitMilliseconds: 500), ["polled"])

            let started = ContinuousClock.now
            XCTAssertEqual(try queue.receive(into: batch, timeoutMilliseconds: 50), .timedOut)
            XCTAssertGreaterThanOrEqual(ContinuousClock.now - started, .milliseconds(20), "it polled before it slept")
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(50)) { queue.interrupt() }
            XCTAssertEqual(try queue.receive(into: batch, timeoutMilliseconds: 5000), .interrupted)
        }
    }

    // (b3) adaptive polling: packets arriving close together are each received (the thread
    // may spin between them), and once they stop a receive still sleeps until its timeout
    // and an interrupt still ends it.
    func testAdaptivePollingQueueReceivesTimesOutAndIsInterrupted() throws {
        try withLocalUDP(toPort: 5559, queuedTo: 9) {
            var configuration = NetfilterQueueConfiguration(queueNumber: 9)
            configuration.polling = .adaptive
            XCTAssertEqual(configuration.busyPollMicroseconds, 0)
            let queue = try NetfilterQueue(configuration: configuration)
            let listener = try UDPSocket(port: 5559)
            let sender = try UDPSocket(port: 0)
            let batch = queue.makeBatch()

            var sent: [String] = []
            for index in 0..<20 {
                sent.append("close \(index)")
                try sender.send(sent[index], toPort: 5559)
                XCTAssertEqual(try queue.receive(into: batch, timeoutMilliseconds: 5000), .received)
                XCTAssertEqual(batch.count, 1)
                try queue.sendVerdicts(for: batch)
            }
            XCTAssertEqual(listener.receiveAll(waitMilliseconds: 500), sent)

            XCTAssertEqual(try queue.receive(into: batch, timeoutMilliseconds: 50), .timedOut)
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(50)) { queue.interrupt() }
            XCTAssertEqual(try queue.receive(into: batch, timeoutMilliseconds: 5000), .interrupted)
            XCTAssertEqual(queue.counters.netlinkErrors, 0, "the kernel accepted every verdict")
        }
    }

    // (c) rtnetlink: dump order and flags, and the monitor.
    func testAddressDumpAndMonitor() throws {
        try NetworkNamespace.withNamespace { namespace in
            try namespace.run {
                for command in [
                    "ip link set lo up", "ip link add nfqr0 type veth peer name nfqr1", "ip link set nfqr0 up", "ip link set nfqr1 up",
                    "ip addr add 10.9.0.1/24 dev nfqr0", "ip addr add 10.9.0.2/24 dev nfqr0",
                    "ip addr add fd00:9::1/64 dev nfqr0 nodad",
                ] {
                    try namespace.host(command.split(separator: " ").map(String.init))
                }
                let index = UInt32(if_nametoindex("nfqr0"))
                let source = RtnetlinkAddressSource()
                let addresses = try source.addresses()
                let ours = addresses.filter { $0.interfaceIndex == index && !$0.address.isIPv6LinkLocal }
                XCTAssertEqual(
                    ours,
                    [
                        InterfaceAddress(interfaceIndex: index, address: IPAddress("10.9.0.1")!, prefixLength: 24),
                        InterfaceAddress(interfaceIndex: index, address: IPAddress("10.9.0.2")!, prefixLength: 24, isSecondary: true),
                        InterfaceAddress(interfaceIndex: index, address: IPAddress("fd00:9::1")!, prefixLength: 64),
                    ])
                XCTAssertEqual(addresses.first?.address, IPAddress("127.0.0.1"), "IPv4 first, lo first")

                let monitor = try source.makeMonitor()
                XCTAssertEqual(try monitor.nextSnapshot(), addresses)
                try namespace.host(["ip", "addr", "add", "10.9.0.3/24", "dev", "nfqr0"])
                let changed = try XCTUnwrap(try monitor.nextSnapshot())
                XCTAssertTrue(changed.contains { $0.address == IPAddress("10.9.0.3") && $0.isSecondary })
                monitor.stop()
                XCTAssertNil(try monitor.nextSnapshot())
            }
        }
    }

    /// Runs `body` in a namespace of its own, loopback up, where local programs' UDP to `port`
    /// is queued to NFQUEUE `queue` (raw OUTPUT). Nothing is sent before `body` binds the queue.
    private func withLocalUDP(toPort port: UInt16, queuedTo queue: UInt16, _ body: @escaping () throws -> Void) throws {
        try NetworkNamespace.withNamespace { namespace in
            try namespace.run {
                try namespace.host(["ip", "link", "set", "lo", "up"])
                try namespace.host([
                    "iptables", "-w", "-t", "raw", "-A", "OUTPUT", "-p", "udp", "--dport", "\(port)",
                    "-j", "NFQUEUE", "--queue-num", "\(queue)",
                ])
                try body()
            }
        }
    }

    private static func ruleLines(_ save: String) -> [String] {
        save.split(separator: "\n").filter { $0.hasPrefix("-A") || $0.hasPrefix(":NFQR") }.map(String.init)
    }
}
