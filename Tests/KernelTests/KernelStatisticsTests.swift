import XCTest

@testable import Kernel

final class KernelStatisticsTests: XCTestCase {
    func testParsesTheProcFile() {
        let text = """
                0  12345     3 2 65531     7     1      999  1
            65535 4294967295     0 2 65531     0     0 4294967295  1
            garbage line
            """
        XCTAssertEqual(
            NetfilterQueueKernelStatistics.parse(text),
            [
                NetfilterQueueKernelStatistics(
                    queueNumber: 0, portID: 12345, queueTotal: 3, copyMode: 2, copyRange: 65531, queueDropped: 7, userDropped: 1, idSequence: 999),
                NetfilterQueueKernelStatistics(
                    queueNumber: 65535, portID: .max, queueTotal: 0, copyMode: 2, copyRange: 65531, queueDropped: 0, userDropped: 0, idSequence: .max),
            ])
    }

    func testAMissingFileMeansNoQueues() throws {
        XCTAssertEqual(try NetfilterQueueKernelStatistics.read(path: "/nonexistent/nfnetlink_queue"), [])
    }
}
