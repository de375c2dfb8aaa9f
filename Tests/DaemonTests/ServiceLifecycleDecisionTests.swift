@testable import Daemon
import XCTest

/// The decisions behind restarts and the watchdog: what ExecStopPost does with the rules,
/// and when a datapath thread counts as hung.
final class ServiceLifecycleDecisionTests: XCTestCase {
    func testRestartJobsKeepTheRules() {
        for job in ["restart", "try-restart", "reload-or-restart"] {
            for result in ["success", "exit-code", nil] {
                XCTAssertFalse(StopPostDecision.decide(pendingJob: job, serviceResult: result).removeRules, "\(job) \(result ?? "-")")
            }
        }
    }

    func testStopJobsRemoveTheRulesWhateverTheResult() {
        for result in ["success", "timeout", "signal", "watchdog", nil] {
            XCTAssertTrue(StopPostDecision.decide(pendingJob: "stop", serviceResult: result).removeRules, result ?? "-")
        }
    }

    func testWithoutAJobTheResultDecides() {
        XCTAssertTrue(StopPostDecision.decide(pendingJob: nil, serviceResult: "success").removeRules)
        XCTAssertTrue(StopPostDecision.decide(pendingJob: nil, serviceResult: nil).removeRules)
        for failure in ["exit-code", "signal", "core-dump", "watchdog", "timeout"] {
            let decision = StopPostDecision.decide(pendingJob: nil, serviceResult: failure)
            XCTAssertFalse(decision.removeRules, failure)
            XCTAssertTrue(decision.reason.contains(failure))
        }
        XCTAssertFalse(StopPostDecision.decide(pendingJob: "start", serviceResult: "watchdog").removeRules)
    }

    func testListJobsOutputIsParsedForTheUnit() {
        let listing = """
            4711 nfq-redirect.service    restart running
            4712 other.service           stop    waiting
            """
        XCTAssertEqual(SystemdJobs.jobType(unit: "nfq-redirect.service", listing: listing), "restart")
        XCTAssertEqual(SystemdJobs.jobType(unit: "other.service", listing: listing), "stop")
        XCTAssertNil(SystemdJobs.jobType(unit: "nfq-redirect-b.service", listing: listing))
        XCTAssertNil(SystemdJobs.jobType(unit: "nfq-redirect.service", listing: ""))
    }

    func testLivenessGateNamesOnlyTheThreadsThatDidNotMove() {
        var gate = DatapathLivenessGate(progress: [10, 20, 30])
        XCTAssertEqual(gate.stuckThreads(progress: [11, 25, 31]), [])
        XCTAssertEqual(gate.stuckThreads(progress: [12, 25, 40]), [1])
        XCTAssertEqual(gate.stuckThreads(progress: [12, 25, 40]), [0, 1, 2])
        XCTAssertEqual(gate.stuckThreads(progress: [13, 26, 41]), [])
    }
}
