import XCTest

@testable import Daemon

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

    /// RestartPreventExitStatus=2: a refused config is final, so ExecStopPost removes the rules
    /// then (unless on_give_up = keep); any other exit status is restarted.
    func testExitStatusTwoIsFinal() {
        let removed = StopPostDecision.decide(pendingJob: nil, serviceResult: "exit-code", exitStatus: "2")
        XCTAssertTrue(removed.removeRules)
        XCTAssertTrue(removed.reason.contains("exit status 2"), removed.reason)
        XCTAssertFalse(StopPostDecision.decide(pendingJob: nil, serviceResult: "exit-code", exitStatus: "2", onGiveUp: .keep).removeRules)
        XCTAssertFalse(StopPostDecision.decide(pendingJob: nil, serviceResult: "exit-code", exitStatus: "1").removeRules)
        XCTAssertFalse(StopPostDecision.decide(pendingJob: nil, serviceResult: "exit-code", exitStatus: nil).removeRules)
        XCTAssertFalse(StopPostDecision.decide(pendingJob: "restart", serviceResult: "exit-code", exitStatus: "2").removeRules)
    }

    func testGivingUpRemovesTheRulesUnlessKeptOrRunningAgain() {
        func decide(_ state: String?, present: Bool = true, keep: Bool = false) -> GiveUpDecision {
            GiveUpDecision.decide(
                unit: "nfq-redirect.service", unitState: state, result: "start-limit-hit",
                rulesPresent: present, onGiveUp: keep ? .keep : .remove)
        }
        let removed = decide("failed")
        XCTAssertTrue(removed.removeRules)
        XCTAssertEqual(
            removed.message, "nfq-redirect.service gave up (start-limit-hit); rules removed: traffic to redirected ports now passes unredirected")
        XCTAssertTrue(decide(nil).removeRules)
        XCTAssertFalse(decide("failed", keep: true).removeRules)
        XCTAssertTrue(decide("failed", keep: true).message.contains("on_give_up = keep"))
        XCTAssertFalse(decide("failed", present: false).removeRules)
        for running in ["active", "activating", "reloading"] { XCTAssertFalse(decide(running).removeRules, running) }
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
