import Kernel
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
}
