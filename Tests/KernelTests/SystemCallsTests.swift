import Glibc
import SystemCalls
import XCTest

/// The one errno policy and the sockaddr_un builder every module uses.
final class SystemCallsTests: XCTestCase {
    func testNothingToReadIsWouldBlockAndABadDescriptorThrowsWithItsName() throws {
        var fds: [Int32] = [-1, -1]
        XCTAssertEqual(pipe(&fds), 0)
        XCTAssertEqual(fcntl(fds[0], F_SETFL, O_NONBLOCK), 0)
        defer {
            close(fds[0])
            close(fds[1])
        }
        var byte: UInt8 = 0
        guard case .wouldBlock = try syscall("read(empty pipe)", { read(fds[0], &byte, 1) }) else {
            return XCTFail("an empty non-blocking pipe must answer wouldBlock")
        }
        XCTAssertThrowsError(try syscallCompleting("read(closed)") { read(-1, &byte, 1) }) { error in
            XCTAssertEqual(error as? SystemCallError, SystemCallError(call: "read(closed)", errno: Errno(rawValue: EBADF)))
        }
        XCTAssertEqual(retryingInterrupts { write(fds[1], "x", 1) }, 1)
        guard case .completed(1) = try syscall("read(pipe)", { read(fds[0], &byte, 1) }) else {
            return XCTFail("one byte written, one byte read")
        }
    }

    func testUnixAddressesFitOrAreRefusedAndAbstractNamesAreOptIn() {
        let longest = "/" + String(repeating: "a", count: UnixSocketAddress.maximumPathLength - 1)
        XCTAssertEqual(UnixSocketAddress.withAddress(path: longest) { _, length in Int(length) }, MemoryLayout<sockaddr_un>.size)
        XCTAssertNil(UnixSocketAddress.withAddress(path: longest + "a") { _, _ in 0 }, "a path sun_path cannot hold")
        let abstractLength = UnixSocketAddress.withAddress(path: "@notify", abstractNames: true) { address, length -> Int in
            let bytes = UnsafeRawPointer(address).advanced(by: MemoryLayout<sa_family_t>.size).assumingMemoryBound(to: UInt8.self)
            XCTAssertEqual(bytes[0], 0, "an abstract name starts with NUL")
            return Int(length)
        }
        XCTAssertEqual(abstractLength, MemoryLayout<sa_family_t>.size + 7)
        XCTAssertEqual(
            UnixSocketAddress.withAddress(path: "@notify") { _, length in Int(length) }, MemoryLayout<sockaddr_un>.size,
            "without abstractNames '@' is an ordinary first byte")
    }

    func testAWakeUpWakesAWaitAndIsDrained() throws {
        let wakeUp = try WakeUpChannel()
        var fds: [Int32] = [-1, -1]
        XCTAssertEqual(pipe(&fds), 0)
        XCTAssertEqual(fcntl(fds[0], F_SETFL, O_NONBLOCK), 0)
        defer {
            close(fds[0])
            close(fds[1])
        }
        wakeUp.signal()
        XCTAssertEqual(try ReadinessWait.wait(for: fds[0], wakeUp: wakeUp, timeoutMilliseconds: 1000), .wokenUp)
        XCTAssertEqual(try ReadinessWait.wait(for: fds[0], wakeUp: wakeUp, timeoutMilliseconds: 0), .timedOut, "drained")
    }
}
