import Foundation
import Kernel
import KernelTesting
import Logging
import RedirectCore
import XCTest

@testable import Daemon

/// Reload and stop on a real `DaemonRuntime` whose kernel side is the in-memory fakes: which
/// rules reach the kernel, what a refused reload leaves in place, what a stop does.
final class DaemonReloadTests: XCTestCase {
    private var directory = ""
    private let installer = RecordingRuleInstaller()

    override func setUpWithError() throws {
        directory = NSTemporaryDirectory() + "nfqr-reload-\(getpid())-\(UInt32.random(in: 0 ... .max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func rule(_ text: String) throws -> RedirectRule {
        try RedirectRule(parsing: text, scope: .network)
    }

    private func configuration(_ rules: [String]) throws -> DaemonConfiguration {
        var configuration = DaemonConfiguration()
        configuration.redirects = try rules.map(rule)
        configuration.lookup.socketPath = directory + "/lookup.sock"
        configuration.stateFile = directory + "/flows.state"
        configuration.tableLimit = 1024
        configuration.getsockopt.enabled = false  // the in-memory kernel: no BPF program on the host
        return configuration
    }

    private func startedRuntime(_ rules: [String]) throws -> DaemonRuntime {
        let runtime = try DaemonRuntime(
            configuration: configuration(rules), logger: Logger(label: "test"), installer: installer,
            addressSource: InMemoryAddressSource(),
            queueFactory: { settings throws(KernelError) in try InMemoryPacketQueue(queueNumber: settings.queueNumber) })
        try runtime.start()
        return runtime
    }

    func testReloadInstallsTheNewRulesAndKeepsQueueingTheRetiredOnes() throws {
        let runtime = try startedRuntime(["tcp:80,443:8080"])
        defer { runtime.stop(keepRules: false) }
        try runtime.reload(configuration(["tcp:443:8080", "udp:53:5353"]))
        // The old rule stays queued for established flows; the datapath's policy drops it.
        XCTAssertEqual(installer.installed?.rules, try ["tcp:443:8080", "udp:53:5353", "tcp:80,443:8080"].map(rule))
        XCTAssertEqual(runtime.rules.value.policy.rules, try ["tcp:443:8080", "udp:53:5353"].map(rule))
        XCTAssertEqual(runtime.configuration.redirects, try ["tcp:443:8080", "udp:53:5353"].map(rule))

        // Put back, the rule is configured again, not retired twice.
        try runtime.reload(configuration(["tcp:80,443:8080"]))
        XCTAssertEqual(installer.installed?.rules, try ["tcp:80,443:8080", "tcp:443:8080", "udp:53:5353"].map(rule))
    }

    /// The once-a-second check: rules a firewall reload removed are put back and counted; the
    /// next check finds them in place.
    func testMissingRulesArePutBackAndCounted() throws {
        let runtime = try startedRuntime(["tcp:80:8080"])
        defer { runtime.stop(keepRules: false) }
        let installs = installer.actions.count
        runtime.checkRules()
        XCTAssertEqual(installer.actions.count, installs, "nothing missing, nothing done")
        installer.simulateFlush()
        runtime.checkRules()
        XCTAssertEqual(installer.actions.count, installs + 1)
        XCTAssertEqual(installer.installed, runtime.configuration.ruleSet)
        XCTAssertEqual(runtime.rulesRestored.load, 1)
        runtime.checkRules()
        XCTAssertEqual(runtime.rulesRestored.load, 1)
        XCTAssertTrue(runtime.statistics().textLines.contains("nfqr_rules_restored_total 1"))
        XCTAssertTrue(runtime.statistics().textLines.contains("nfqr_build_info{version=\"\(DaemonVersion.current)\"} 1"))
    }

    /// `[rules] manage = false`: the daemon never installs, replaces or removes; it only notices.
    func testUnmanagedRulesAreNeverTouched() throws {
        var unmanaged = try configuration(["tcp:80:8080"])
        unmanaged.ruleManagement.manage = false
        let runtime = try DaemonRuntime(
            configuration: unmanaged, logger: Logger(label: "test"), installer: installer, addressSource: InMemoryAddressSource(),
            queueFactory: { settings throws(KernelError) in try InMemoryPacketQueue(queueNumber: settings.queueNumber) })
        try runtime.start()
        runtime.checkRules()
        XCTAssertEqual(runtime.rulesMissing.load, 1)
        var reloaded = unmanaged
        reloaded.redirects = try [rule("tcp:443:8080")]
        try runtime.reload(reloaded)
        runtime.stop(keepRules: false)
        XCTAssertEqual(installer.actions, [])
        XCTAssertEqual(runtime.rulesRestored.load, 0)
    }

    func testRetiredRulesGoOnceNoFlowUsesThem() throws {
        let runtime = try startedRuntime(["tcp:80:8080"])
        defer { runtime.stop(keepRules: false) }
        try runtime.reload(configuration(["tcp:443:8080"]))
        XCTAssertEqual(installer.installed?.rules.count, 2)
        for _ in 0..<10 { runtime.sweep() }  // the table is empty: nothing holds the old rule
        XCTAssertEqual(installer.installed?.rules, [try rule("tcp:443:8080")])
    }

    func testAReloadThatNeedsARestartIsRefusedAndChangesNothing() throws {
        let runtime = try startedRuntime(["tcp:80:8080"])
        defer { runtime.stop(keepRules: false) }
        let actions = installer.actions.count
        var new = try configuration(["tcp:443:8080"])
        new.queues.first = 10
        new.tableLimit = 2048
        XCTAssertThrowsError(try runtime.reload(new)) { error in
            XCTAssertTrue("\(error)".contains("queue settings, table.limit changed"), "\(error)")
        }
        XCTAssertEqual(installer.actions.count, actions)
        XCTAssertEqual(runtime.configuration.redirects, [try rule("tcp:80:8080")])
    }

    func testAReloadTheKernelRefusesKeepsTheRunningConfiguration() throws {
        let runtime = try startedRuntime(["tcp:80:8080"])
        defer {
            installer.failWith(nil)
            runtime.stop(keepRules: false)
        }
        installer.failWith(.programFailed(command: "iptables-restore", status: 1, output: "no"))
        XCTAssertThrowsError(try runtime.reload(configuration(["tcp:443:8080"])))
        XCTAssertEqual(runtime.configuration.redirects, [try rule("tcp:80:8080")])
        XCTAssertEqual(runtime.rules.value.policy.rules, [try rule("tcp:80:8080")])
    }

    func testAStopForGoodRemovesTheRulesAndTheSavedTable() throws {
        let runtime = try startedRuntime(["tcp:80:8080"])
        FileManager.default.createFile(atPath: directory + "/flows.state", contents: Data([1, 2, 3]))
        runtime.stop(keepRules: false)
        XCTAssertEqual(installer.actions.last, .remove)
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory + "/flows.state"))
    }

    func testAStopForARestartKeepsTheRulesAndSavesTheTable() throws {
        let runtime = try startedRuntime(["tcp:80:8080"])
        runtime.stop(keepRules: true)
        XCTAssertNotEqual(installer.actions.last, .remove)
        XCTAssertTrue(FileManager.default.fileExists(atPath: directory + "/flows.state"))
    }
}
