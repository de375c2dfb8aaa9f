import XCTest

@testable import Kernel

/// The adaptive busy-poll policy, driven with made-up instants (nanoseconds): when it spins,
/// how long, and how much of the wall time it may spend doing so.
final class AdaptivePollPolicyTests: XCTestCase {
    private let us: Int64 = 1000
    private let ms: Int64 = 1_000_000
    private let limits = AdaptivePollPolicy.Limits(
        closeGapNanoseconds: 1_000_000, maximumSpinNanoseconds: 50_000, dutyPercent: 50, burstNanoseconds: 2_000_000)

    func testNeverSpinsBeforeBatchesArriveCloseTogether() {
        var policy = AdaptivePollPolicy(limits: limits)
        XCTAssertNil(policy.spinDeadline(at: 0), "no batch yet")
        policy.batchArrived(at: 1 * ms)
        XCTAssertNil(policy.spinDeadline(at: 1 * ms + 10 * us), "one batch alone says nothing about the next")
        policy.batchArrived(at: 10 * ms)
        XCTAssertNil(policy.spinDeadline(at: 10 * ms + 10 * us), "9 ms apart is not close together")
    }

    func testSpinsAtMostTheMaximumAfterCloseBatches() {
        var policy = AdaptivePollPolicy(limits: limits)
        policy.batchArrived(at: 0)
        policy.batchArrived(at: 100 * us)
        XCTAssertTrue(policy.arrivingCloseTogether)
        XCTAssertEqual(policy.spinDeadline(at: 110 * us), 160 * us)
    }

    func testStopsSpinningAfterQuiet() {
        var policy = AdaptivePollPolicy(limits: limits)
        var now: Int64 = 0
        for _ in 0..<10 {
            policy.batchArrived(at: now)
            now += 100 * us
        }
        // The last spin ends with nothing: the thread sleeps. If it wakes (timeout) later
        // without a batch, it does not spin again.
        let deadline = try! XCTUnwrap(policy.spinDeadline(at: now))
        policy.spun(from: now, to: deadline)
        XCTAssertNil(policy.spinDeadline(at: deadline + 2 * ms), "2 ms after the last batch: quiet")
        // A batch after the quiet spell does not start a spin either; the next close one does.
        policy.batchArrived(at: 50 * ms)
        XCTAssertNil(policy.spinDeadline(at: 50 * ms + us))
        policy.batchArrived(at: 50 * ms + 80 * us)
        XCTAssertNotNil(policy.spinDeadline(at: 50 * ms + 81 * us))
    }

    /// Traffic where every wait could be spun away (a batch every 60 us, each caught after a
    /// whole spin of 50 us): the thread spins at most the duty share of the time, plus the burst.
    func testSpinningIsCappedAtTheDutyShare() {
        for duty: Int64 in [25, 50] {
            var capped = limits
            capped.dutyPercent = duty
            var policy = AdaptivePollPolicy(limits: capped)
            var now: Int64 = 0
            var spinning: Int64 = 0
            policy.batchArrived(at: now)
            let end = 1000 * ms
            while now < end {
                now += 10 * us  // the batch's work
                if let deadline = policy.spinDeadline(at: now) {
                    // The next batch comes 50 us after the wait began, during or after the spin.
                    let arrival = now + 50 * us
                    let stop = min(deadline, arrival)
                    policy.spun(from: now, to: stop)
                    spinning += stop - now
                }
                now += 50 * us
                policy.batchArrived(at: now)
            }
            let share = Double(spinning) / Double(end)
            XCTAssertLessThanOrEqual(share, Double(duty) / 100 + Double(limits.burstNanoseconds) / Double(end), "duty \(duty)")
            XCTAssertGreaterThan(share, Double(duty) / 100 * 0.8, "duty \(duty): the budget is used, not wasted")
        }
    }

    func testBudgetRefillsWithWallTimeUpToTheBurst() {
        var policy = AdaptivePollPolicy(limits: limits)
        policy.batchArrived(at: 0)
        policy.batchArrived(at: 10 * us)
        XCTAssertEqual(policy.budgetNanoseconds, 2 * ms)
        // Spend all of it, in one long (fixed) stretch the policy is told about.
        _ = policy.spinDeadline(at: 10 * us)
        policy.spun(from: 10 * us, to: 10 * us + 10 * ms)
        XCTAssertEqual(policy.budgetNanoseconds, 0)
        // 1 ms later half of it is back at 50 %; a spin is shorter than the maximum when the
        // budget is smaller.
        policy.batchArrived(at: 10 * us + 10 * ms)
        policy.batchArrived(at: 10 * us + 10 * ms + 60 * us)
        let now = 10 * us + 10 * ms + 60 * us
        XCTAssertEqual(policy.spinDeadline(at: now), now + 30 * us)
        // Hours of quiet: full again, never more (and no overflow).
        policy.batchArrived(at: 4 * 3600 * 1000 * ms)
        policy.batchArrived(at: 4 * 3600 * 1000 * ms + us)
        _ = policy.spinDeadline(at: 4 * 3600 * 1000 * ms + us)
        XCTAssertEqual(policy.budgetNanoseconds, 2 * ms)
    }

    func testAnExhaustedBudgetMeansSleep() {
        var zero = limits
        zero.dutyPercent = 0
        var policy = AdaptivePollPolicy(limits: zero)
        policy.batchArrived(at: 0)
        policy.batchArrived(at: 10 * us)
        policy.spun(from: 0, to: 5 * ms)
        policy.batchArrived(at: 5 * ms + 10 * us)
        XCTAssertNil(policy.spinDeadline(at: 5 * ms + 11 * us))
    }

    func testClocksGoingBackwardsChargeNothing() {
        var policy = AdaptivePollPolicy(limits: limits)
        policy.batchArrived(at: 10 * ms)
        policy.batchArrived(at: 10 * ms + 10 * us)
        _ = policy.spinDeadline(at: 10 * ms + 20 * us)
        policy.spun(from: 10 * ms + 20 * us, to: 5 * ms)
        XCTAssertEqual(policy.budgetNanoseconds, 2 * ms)
    }

    func testParsing() {
        XCTAssertEqual(QueuePolling(parsing: "adaptive"), .adaptive)
        XCTAssertEqual(QueuePolling(parsing: "200"), .fixed(microseconds: 200))
        XCTAssertEqual(QueuePolling(parsing: "0"), .off)
        XCTAssertNil(QueuePolling(parsing: "fast"))
        XCTAssertEqual("\(QueuePolling.adaptive)", "adaptive")
        var configuration = NetfilterQueueConfiguration(queueNumber: 0)
        configuration.polling = .adaptive
        XCTAssertEqual(configuration.busyPollMicroseconds, 0)
        configuration.busyPollMicroseconds = 30
        XCTAssertEqual(configuration.polling, .fixed(microseconds: 30))
    }
}
