import Kernel
import RedirectCore
import XCTest

@testable import Daemon

/// The judgements behind `nfq-redirect doctor`.
final class DoctorTests: XCTestCase {
    private func queue(_ number: UInt16, dropped: UInt32 = 0) -> NetfilterQueueKernelStatistics {
        NetfilterQueueKernelStatistics(
            queueNumber: number, portID: 1234, queueTotal: 0, copyMode: 2, copyRange: 65535,
            queueDropped: dropped, userDropped: 0, idSequence: 1)
    }

    func testQueues() {
        var configuration = DaemonConfiguration()
        configuration.queues.count = 2
        XCTAssertEqual(Doctor.queues(configuration, kernel: (0...3).map { queue($0) }, rulesInPlace: true).map(\.level), [.ok])
        let none = Doctor.queues(configuration, kernel: [], rulesInPlace: true)
        XCTAssertEqual(none.map(\.level), [.fail])
        XCTAssertTrue(none[0].detail.contains("fail-closed"), none[0].detail)
        XCTAssertFalse(Doctor.queues(configuration, kernel: [], rulesInPlace: false)[0].detail.contains("fail-closed"))
        configuration.queues.failOpen = true
        XCTAssertTrue(Doctor.queues(configuration, kernel: [], rulesInPlace: true)[0].detail.contains("fail-open"))
        XCTAssertEqual(Doctor.queues(configuration, kernel: [queue(0), queue(1), queue(2)], rulesInPlace: true)[0].detail, "queue 3 not bound")
        let drops = Doctor.queues(configuration, kernel: (0...3).map { queue($0, dropped: 5) }, rulesInPlace: true)
        XCTAssertEqual(drops.map(\.level), [.ok, .warn])
        XCTAssertEqual(Doctor.exitStatus(drops), 0)
        XCTAssertEqual(Doctor.exitStatus(none), 1)
    }

    func testRules() {
        XCTAssertEqual(Doctor.rules(missing: [], manage: true, daemonRunning: true).level, .ok)
        XCTAssertEqual(Doctor.rules(missing: ["x"], manage: true, daemonRunning: true).level, .warn)
        XCTAssertTrue(Doctor.rules(missing: ["x"], manage: true, daemonRunning: false).detail.hasPrefix("not installed"))
        XCTAssertEqual(Doctor.rules(missing: ["x"], manage: false, daemonRunning: true).level, .fail)
        XCTAssertEqual(Doctor.Finding(.warn, "rules", "x").description, "warn  rules: x")
    }

    private func configuration(_ scopes: [RedirectRule.Scope]) -> DaemonConfiguration {
        var configuration = DaemonConfiguration()
        configuration.redirects = scopes.map { try! RedirectRule(parsing: "tcp:80:8080", scope: $0) }
        return configuration
    }

    func testForwardingMattersOnlyForNetworkRedirects() {
        XCTAssertNil(Doctor.forwarding(configuration([.local]), ipv4: 0, ipv6: 0))
        XCTAssertEqual(Doctor.forwarding(configuration([.network]), ipv4: 1, ipv6: 1)?.level, .ok)
        let off = Doctor.forwarding(configuration([.network]), ipv4: 0, ipv6: 1)
        XCTAssertEqual(off?.level, .warn)
        XCTAssertTrue(off?.detail.contains("sysctl -w net.ipv4.ip_forward=1") ?? false, off?.detail ?? "")
    }

    func testStrictReversePathFilter() {
        let network = configuration([.network])
        XCTAssertNil(Doctor.reversePathFilter(configuration([.local]), values: ["all": 1, "eth0": 1]))
        XCTAssertEqual(Doctor.reversePathFilter(network, values: ["all": 0, "default": 1, "lo": 1, "eth0": 2])?.level, .ok)
        let strict = Doctor.reversePathFilter(network, values: ["all": 1, "lo": 0, "eth0": 0, "eth1": 2])
        XCTAssertEqual(strict?.level, .warn)
        XCTAssertTrue(strict?.detail.hasPrefix("strict on eth0:") ?? false, strict?.detail ?? "")  // max(all, eth1) = 2: loose
    }

    func testALocalRedirectWithoutExclusionsLoops() {
        var local = configuration([.local])
        XCTAssertEqual(Doctor.exclusions(local).level, .warn)
        local.exclusions.uids = [13]
        XCTAssertEqual(Doctor.exclusions(local).level, .ok)
        XCTAssertEqual(Doctor.exclusions(configuration([.network])).level, .ok)
    }

    func testGetsockoptHook() {
        var hooked = configuration([.network])
        XCTAssertEqual(Doctor.getsockoptHook(hooked, builtIn: true, attached: 1, why: nil, daemonRunning: true).level, .ok)
        let missing = Doctor.getsockoptHook(hooked, builtIn: true, attached: 0, why: nil, daemonRunning: true)
        XCTAssertEqual(missing.level, .warn)
        XCTAssertTrue(missing.detail.contains("journalctl"), missing.detail)
        XCTAssertEqual(Doctor.getsockoptHook(hooked, builtIn: true, attached: nil, why: "EPERM", daemonRunning: true).level, .warn)
        hooked.getsockopt.enabled = false
        XCTAssertEqual(Doctor.getsockoptHook(hooked, builtIn: true, attached: 0, why: nil, daemonRunning: true).level, .ok)
    }

    func testSocketAccessForAUser() {
        let proxy = Doctor.Account(name: "proxy", uid: 13, gid: 13, groups: [13])
        let root = Doctor.Account(name: "root", uid: 0, gid: 0, groups: [0])
        let path = "/run/nfq-redirect/lookup.sock"
        let directories = [
            Doctor.FileAccess(path: "/", uid: 0, gid: 0, mode: 0o755), Doctor.FileAccess(path: "/run", uid: 0, gid: 0, mode: 0o755),
            Doctor.FileAccess(path: "/run/nfq-redirect", uid: 0, gid: 0, mode: 0o755),
        ]
        let socket = Doctor.FileAccess(path: path, uid: 0, gid: 4242, mode: 0o140660)
        var lookup = DaemonConfiguration.Lookup()
        let refused = Doctor.socketAccess(proxy, socketPath: path, directories: directories, socket: socket, lookup: lookup)
        XCTAssertEqual(refused.level, .fail)
        XCTAssertTrue(refused.detail.contains("EACCES") && refused.detail.contains("usermod -aG 4242 proxy"), refused.detail)
        var member = proxy
        member.groups.append(4242)
        XCTAssertEqual(Doctor.socketAccess(member, socketPath: path, directories: directories, socket: socket, lookup: lookup).level, .ok)
        XCTAssertEqual(Doctor.socketAccess(root, socketPath: path, directories: directories, socket: socket, lookup: lookup).level, .ok)
        var closed = directories
        closed[2].mode = 0o700
        let blocked = Doctor.socketAccess(member, socketPath: path, directories: closed, socket: socket, lookup: lookup)
        XCTAssertTrue(blocked.detail.hasPrefix("cannot enter /run/nfq-redirect"), blocked.detail)
        lookup.allowAll = false
        lookup.allowUsers = ["0"]
        let denied = Doctor.socketAccess(member, socketPath: path, directories: directories, socket: socket, lookup: lookup)
        XCTAssertTrue(denied.detail.contains("ERR DENIED"), denied.detail)
        XCTAssertEqual(Doctor.socketAccess(member, socketPath: path, directories: directories, socket: nil, lookup: lookup).level, .fail)
    }
}
