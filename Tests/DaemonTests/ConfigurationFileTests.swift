import Daemon
import Kernel
import RedirectCore
import XCTest

final class ConfigurationFileTests: XCTestCase {
    private func load(_ text: String) throws -> DaemonConfiguration {
        var configuration = DaemonConfiguration()
        try ConfigurationFile.apply(text, path: "test.toml", to: &configuration)
        return configuration
    }

    private func assertError(
        _ text: String, location: String, field: String, contains problem: String, file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertThrowsError(try load(text), file: file, line: line) { error in
            guard let error = error as? ConfigurationError else { return XCTFail("not a ConfigurationError: \(error)", file: file, line: line) }
            XCTAssertEqual(error.location, location, file: file, line: line)
            XCTAssertEqual(error.field, field, file: file, line: line)
            XCTAssertTrue(error.problem.contains(problem), "\(error.problem) lacks \(problem)", file: file, line: line)
        }
    }

    private func shippedConfiguration() throws -> String {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../config/nfq-redirect.toml")
        return try String(contentsOf: url, encoding: .utf8)
    }

    /// Day one: the shipped file redirects nothing, and the daemon refuses it, saying why.
    func testTheShippedConfigurationRedirectsNothingAndIsRefused() throws {
        let configuration = try load(shippedConfiguration())
        XCTAssertEqual(configuration.redirects, [])
        XCTAssertThrowsError(try configuration.validate(source: "config/nfq-redirect.toml")) { error in
            XCTAssertTrue("\(error)".contains("nothing to redirect"), "\(error)")
        }
        XCTAssertNoThrow(try configuration.validate(source: "config/nfq-redirect.toml", requireRedirects: false))
        XCTAssertEqual(configuration.ruleManagement, RuleManagement())
    }

    /// Its commented-out examples, uncommented, are a valid configuration.
    func testTheShippedExamplesValidateOnceUncommented() throws {
        let keys = ["[[redirect]]", "proto ", "ports ", "to_port ", "scope ", "sources ", "destinations ", "families "]
        let text = try shippedConfiguration().split(separator: "\n", omittingEmptySubsequences: false).map { line in
            keys.contains { line.hasPrefix("# " + $0) } ? String(line.dropFirst(2)) : String(line)
        }.joined(separator: "\n")
        var configuration = try load(text)
        XCTAssertEqual(configuration.redirects.map(\.description), ["tcp:80,443:8080", "udp:53:5353", "tcp:9000:8090"])
        configuration.redirects[0].sources = []  // the example prefixes are documentation ranges of both families
        XCTAssertNoThrow(try configuration.validate(source: "config/nfq-redirect.toml"))
    }

    func testDatapathSection() throws {
        let configuration = try load(
            """
            [datapath]
            mode = "kernel-nat"
            mark_mask = "0x00f00000"
            resync_interval = 10
            [[redirect]]
            proto = "tcp"
            ports = "80"
            to_port = 8080
            """)
        XCTAssertEqual(configuration.datapath.mode, .kernelNAT)
        XCTAssertEqual(configuration.datapath.markMask, 0x00f0_0000)
        XCTAssertEqual(configuration.datapath.resyncSeconds, 10)
        XCTAssertEqual(configuration.ruleSet.kernelNAT?.value(for: 8080), 0x0010_0000)
        XCTAssertEqual(DaemonConfiguration().datapath.mode, .userspace, "the userspace mode stays the default")
        assertError("[datapath]\nmode = \"fast\"\n", location: "test.toml:2", field: "datapath.mode", contains: "userspace or kernel-nat")
        assertError("[datapath]\nmark_mask = \"0\"\n", location: "test.toml:2", field: "datapath.mark_mask", contains: "non-zero mask")

        var tooMany = configuration
        tooMany.datapath.markMask = 0x1
        tooMany.redirects += [try RedirectRule(parsing: "tcp:81:8081", scope: .network)]
        XCTAssertThrowsError(try tooMany.validate(source: "x")) {
            XCTAssertTrue("\($0)".contains("tells 1 redirect ports apart, the rules name 2"), "\($0)")
        }
        var overlapping = configuration
        overlapping.exclusions.marks = [FirewallMark(value: 0x0010_0000)]
        XCTAssertThrowsError(try overlapping.validate(source: "x")) { XCTAssertTrue("\($0)".contains("overlaps"), "\($0)") }

        var flags = CommandLineOverrides()
        flags.datapath = "kernel-nat"
        var fromFlags = DaemonConfiguration()
        try flags.apply(to: &fromFlags)
        XCTAssertEqual(fromFlags.datapath.mode, .kernelNAT)
        flags.datapath = "kernel"
        XCTAssertThrowsError(try flags.apply(to: &fromFlags))
    }

    func testRulesSection() throws {
        let configuration = try load("[rules]\nmanage = false\non_give_up = \"keep\"\n")
        XCTAssertFalse(configuration.ruleManagement.manage)
        XCTAssertEqual(configuration.ruleManagement.onGiveUp, .keep)
        assertError("[rules]\non_give_up = \"later\"\n", location: "test.toml:2", field: "rules.on_give_up", contains: "remove or keep")
        assertError("[rules]\nmanaged = true\n", location: "test.toml:2", field: "rules.managed", contains: "unknown key")
    }

    func testEveryFieldIsRead() throws {
        let configuration = try load(
            """
            [queue]
            first = 10
            count = 2
            max_length = 8192
            receive_buffer = 16777216
            fail_open = true
            gso = false
            busy_poll = 150

            [lookup]
            socket = "/run/x/lookup.sock"
            mode = "0600"
            group = "proxy"
            allow_users = ["proxy", 1001]
            allow_groups = ["mesh"]
            max_clients = 50
            idle_timeout = 60
            busy_poll = 75

            [[redirect]]
            proto = "tcp"
            ports = "80,443"
            to_port = 8080
            sources = ["192.0.2.0/24", "2001:db8::/32"]

            [[redirect]]
            proto = "udp"
            ports = 53
            to_port = 5353
            scope = "local"
            families = ["ipv4"]
            destinations = ["198.51.100.0/24"]

            [exclude]
            marks = ["0x1", "0x100/0xff00"]
            uids = [998]

            [table]
            limit = 100000

            [timeouts]
            tcp_established = 3600
            udp_replied = 60

            [state]
            file = "/var/lib/x/flows.state"
            keep_rules_on_exit = true

            [log]
            level = "debug"

            [metrics]
            listen = "127.0.0.1:9753"
            """)
        XCTAssertEqual(configuration.queues.first, 10)
        XCTAssertEqual(configuration.queues.count, 2)
        XCTAssertEqual(configuration.queues.originalQueues, 10...11)
        XCTAssertEqual(configuration.queues.replyQueues, 12...13)
        XCTAssertEqual(configuration.queues.maxLength, 8192)
        XCTAssertEqual(configuration.queues.receiveBufferBytes, 16_777_216)
        XCTAssertTrue(configuration.queues.failOpen)
        XCTAssertFalse(configuration.queues.gso)
        XCTAssertEqual(configuration.queues.busyPollMicroseconds, 150)
        XCTAssertEqual(configuration.lookup.socketPath, "/run/x/lookup.sock")
        XCTAssertEqual(configuration.lookup.socketMode, 0o600)
        XCTAssertEqual(configuration.lookup.socketGroup, "proxy")
        XCTAssertEqual(configuration.lookup.allowUsers, ["proxy", "1001"])
        XCTAssertEqual(configuration.lookup.allowGroups, ["mesh"])
        XCTAssertFalse(configuration.lookup.allowAll)
        XCTAssertEqual(configuration.lookup.maxClients, 50)
        XCTAssertEqual(configuration.lookup.idleTimeoutSeconds, 60)
        XCTAssertEqual(configuration.lookup.busyPollMicroseconds, 75)
        XCTAssertEqual(configuration.redirects.count, 2)
        XCTAssertEqual(configuration.redirects[0].description, "tcp:80,443:8080")
        XCTAssertEqual(configuration.redirects[0].scope, .network)
        XCTAssertEqual(configuration.redirects[0].sources.map(\.description), ["192.0.2.0/24", "2001:db8::/32"])
        XCTAssertEqual(configuration.redirects[1].description, "udp:53:5353")
        XCTAssertEqual(configuration.redirects[1].scope, .local)
        XCTAssertEqual(configuration.redirects[1].families, [.ipv4])
        XCTAssertEqual(configuration.exclusions.marks, [FirewallMark(value: 1), FirewallMark(value: 0x100, mask: 0xff00)])
        XCTAssertEqual(configuration.exclusions.uids, [998])
        XCTAssertEqual(configuration.tableLimit, 100_000)
        XCTAssertEqual(configuration.timeouts.established, 3600)
        XCTAssertEqual(configuration.timeouts.udpReplied, 60)
        XCTAssertEqual(configuration.timeouts.synSent, 120, "unset timeouts keep the kernel's defaults")
        XCTAssertEqual(configuration.stateFile, "/var/lib/x/flows.state")
        XCTAssertTrue(configuration.keepRulesOnExit)
        XCTAssertEqual(configuration.logLevel, "debug")
        XCTAssertEqual(configuration.metrics.listen, "127.0.0.1:9753")
    }

    /// Fuzz/Sources/FuzzConfiguration, crash-7f77ef0d: toml++ asserts (abort) on a table header
    /// starting with a non-ASCII character; a clean error must come first, and text inside a
    /// multi-line string must not be taken for a header.
    func testTableHeaderStartingWithNonASCIIIsAnErrorNotAnAbort() throws {
        assertError("[queue]\ncount = 1\n[\u{FFFD}\u{FFFD}3,5000-5;10\"\n", location: "test.toml:3", field: "", contains: "table name")
        assertError("[[ é]]\n", location: "test.toml:1", field: "", contains: "table name")
        assertError("# [é] in a comment is fine\n[;r[[redirect]]\n", location: "test.toml:2", field: "", contains: "table name")
        // Not headers: lines of a multi-line array.
        XCTAssertThrowsError(try load("[[redirect]]\nproto = \"tcp\"\nports = \"80\"\nto_port = 8080\nsources = [\n[],\n]\n")) { error in
            XCTAssertFalse("\(error)".contains("table name"), "an array line taken for a header: \(error)")
        }
        XCTAssertThrowsError(try load("[[redirect]]\nproto = \"tcp\"\nports = \"80\"\nto_port = 8080\nsources = \"\"\"\n[é]\n\"\"\"\n")) { error in
            XCTAssertFalse("\(error)".contains("table name"), "a multi-line string line taken for a header: \(error)")
        }
    }

    func testErrorsNameTheFieldAndTheLine() {
        assertError("[queue]\ncount = 0\n", location: "test.toml:2", field: "queue.count", contains: "out of range")
        assertError("[queue]\ncuont = 2\n", location: "test.toml:2", field: "queue.cuont", contains: "unknown key")
        assertError("[queue]\nbusy_poll = 100001\n", location: "test.toml:2", field: "queue.busy_poll", contains: "out of range 0...100000")
        assertError("[queue]\nbusy_poll = \"fast\"\n", location: "test.toml:2", field: "queue.busy_poll", contains: "\"adaptive\" or an integer")
        assertError("[queue]\nfail_open = \"yes\"\n", location: "test.toml:2", field: "queue.fail_open", contains: "true or false")
        assertError(
            "\n[[redirect]]\nproto = \"sctp\"\nports = \"80\"\nto_port = 8080\n", location: "test.toml:3", field: "redirect[0].proto",
            contains: "sctp")
        assertError(
            "[[redirect]]\nproto = \"tcp\"\nports = \"80\"\nto_port = 8080\n[[redirect]]\nproto = \"tcp\"\nports = \"70000\"\nto_port = 8080\n",
            location: "test.toml:7", field: "redirect[1].ports", contains: "out of range")
        assertError("[[redirect]]\nproto = \"tcp\"\nports = \"80\"\n", location: "test.toml:1", field: "redirect[0].to_port", contains: "required")
        assertError(
            "[[redirect]]\nproto = \"tcp\"\nports = \"80\"\nto_port = 8080\nsources = [\"10.0.0.0/33\"]\n", location: "test.toml:5",
            field: "redirect[0].sources", contains: "10.0.0.0/33")
        assertError("[lookup]\nmode = \"999\"\n", location: "test.toml:2", field: "lookup.mode", contains: "octal")
        assertError("[exclude]\nmarks = [\"0xZZ\"]\n", location: "test.toml:2", field: "exclude.marks", contains: "0xZZ")
        assertError("[timeouts]\ntcp_established = -1\n", location: "test.toml:2", field: "timeouts.tcp_established", contains: "out of range")
        assertError("bogus = 1\n", location: "test.toml:1", field: "bogus", contains: "unknown key")
    }

    func testSyntaxErrorsGiveTheLine() {
        XCTAssertThrowsError(try load("[queue]\ncount = = 2\n")) { error in
            XCTAssertEqual((error as? ConfigurationError)?.location, "test.toml:2")
        }
    }

    func testValidationCatchesWholeConfigurationProblems() throws {
        var configuration = DaemonConfiguration()
        XCTAssertThrowsError(try configuration.validate(source: "x")) { XCTAssertEqual(($0 as? ConfigurationError)?.field, "redirect") }
        configuration.redirects = [try RedirectRule(parsing: "tcp:80,8080:8080", scope: .network)]
        XCTAssertThrowsError(try configuration.validate(source: "x")) { error in
            XCTAssertTrue("\(error)".contains("itself redirected"), "\(error)")
        }
        configuration.redirects = [try RedirectRule(parsing: "tcp:80:8080", scope: .network)]
        XCTAssertNoThrow(try configuration.validate(source: "x"))
        configuration.lookup.socketPath = "relative.sock"
        XCTAssertThrowsError(try configuration.validate(source: "x")) { XCTAssertEqual(($0 as? ConfigurationError)?.field, "lookup.socket") }
        configuration.lookup.socketPath = "/" + String(repeating: "a", count: 120)
        XCTAssertThrowsError(try configuration.validate(source: "x"))
        configuration.lookup.socketPath = "/run/ok.sock"
        configuration.metrics.listen = "nonsense"
        XCTAssertThrowsError(try configuration.validate(source: "x")) { XCTAssertEqual(($0 as? ConfigurationError)?.field, "metrics.listen") }
        configuration.metrics.listen = "[::1]:9753"
        XCTAssertNoThrow(try configuration.validate(source: "x"))
    }

    func testFlagsWinOverTheFile() throws {
        var configuration = try load("[[redirect]]\nproto = \"tcp\"\nports = \"80\"\nto_port = 8080\n[queue]\nfirst = 5\n")
        var overrides = CommandLineOverrides()
        overrides.queue = 7
        overrides.busyPoll = 200
        overrides.lookupBusyPoll = 100
        overrides.redirects = ["udp:53:5353"]
        overrides.stateFile = .some(nil)
        try overrides.apply(to: &configuration)
        XCTAssertEqual(configuration.queues.first, 7)
        XCTAssertEqual(configuration.queues.busyPollMicroseconds, 200)
        XCTAssertEqual(configuration.lookup.busyPollMicroseconds, 100)
        XCTAssertEqual(configuration.redirects.map(\.description), ["udp:53:5353"])
        XCTAssertNil(configuration.stateFile)
    }

    func testBusyPollIsFixedOrAdaptive() throws {
        XCTAssertEqual(DaemonConfiguration().queues.polling, .adaptive, "the default")
        XCTAssertEqual(try load(shippedConfiguration()).queues.polling, .adaptive, "the shipped file says the default")
        XCTAssertEqual(try load("[queue]\nbusy_poll = \"adaptive\"\n").queues.polling, .adaptive)
        XCTAssertEqual(try load("[queue]\nbusy_poll = 0\n").queues.polling, .off)
        var configuration = try load("[queue]\nbusy_poll = 200\n")
        XCTAssertEqual(configuration.queues.polling, .fixed(microseconds: 200))
        var overrides = CommandLineOverrides()
        overrides.busyPoll = QueuePolling(argument: "adaptive")
        try overrides.apply(to: &configuration)
        XCTAssertEqual(configuration.queues.polling, .adaptive)
        XCTAssertEqual(configuration.queues.busyPollMicroseconds, 0)
        XCTAssertTrue(configuration.summary.contains("busy-poll adaptive"))
        XCTAssertNil(QueuePolling(argument: "often"))
    }

    func testTheLiveTableSitsBesideTheLookupSocketUnlessNamedOrOff() throws {
        var configuration = DaemonConfiguration()
        XCTAssertEqual(configuration.liveTablePath, "/run/nfq-redirect/flows.table")
        configuration.lookup.socketPath = "/tmp/x/lookup.sock"
        XCTAssertEqual(configuration.liveTablePath, "/tmp/x/flows.table")
        configuration = try load("[state]\ntable = \"/run/a/t\"\n")
        XCTAssertEqual(configuration.liveTablePath, "/run/a/t")
        configuration = try load("[state]\ntable = \"\"\n")
        XCTAssertNil(configuration.liveTablePath)
        XCTAssertThrowsError(try load("[state]\ntable = \"relative\"\n"))
        var overrides = CommandLineOverrides()
        overrides.tableFile = .some("/run/b/t")
        try overrides.apply(to: &configuration)
        XCTAssertEqual(configuration.liveTablePath, "/run/b/t")
        overrides.tableFile = .some("")
        try overrides.apply(to: &configuration)
        XCTAssertNil(configuration.liveTablePath)
        overrides.tableFile = .some(nil)  // --no-state
        configuration = DaemonConfiguration()
        try overrides.apply(to: &configuration)
        XCTAssertNil(configuration.liveTablePath)
    }

    func testBadFlagsGiveOneClearProblem() {
        for (flag, expected) in [
            ("tcp:80", "PROTO:PORTS:TOPORT"), ("sctp:80:8080", "unknown protocol 'sctp'"), ("tcp:0:8080", "out of range"),
            ("tcp:80:99999", "target port"),
        ] {
            var configuration = DaemonConfiguration()
            var overrides = CommandLineOverrides()
            overrides.redirects = [flag]
            XCTAssertThrowsError(try overrides.apply(to: &configuration)) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(error) lacks \(expected)")
                XCTAssertTrue("\(error)".hasPrefix("--redirect \(flag)"), "\(error)")
            }
        }
        var configuration = DaemonConfiguration()
        var overrides = CommandLineOverrides()
        overrides.busyPoll = -1
        XCTAssertThrowsError(try overrides.apply(to: &configuration)) { error in
            XCTAssertTrue("\(error)".hasPrefix("--busy-poll"), "\(error)")
            XCTAssertTrue("\(error)".contains("out of range"), "\(error)")
        }
        overrides = CommandLineOverrides()
        overrides.lookupBusyPoll = 100_001
        XCTAssertThrowsError(try overrides.apply(to: &configuration)) { error in
            XCTAssertTrue("\(error)".hasPrefix("--lookup-busy-poll"), "\(error)")
        }
    }
}
