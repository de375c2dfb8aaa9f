import Glibc
import XCTest

@testable import Daemon

/// The sd_notify protocol against a fake NOTIFY_SOCKET: a datagram socket this test reads.
final class SystemdNotifierTests: XCTestCase {
    /// A bound datagram socket standing in for systemd's notification socket.
    private final class FakeNotifySocket {
        let fd: Int32
        let name: String

        /// `abstract`: bound in the abstract namespace, named `@...` as systemd does.
        init(abstract: Bool) throws {
            fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw POSIXError(.EIO) }
            let unique = "nfqr-notify-test-\(getpid())-\(UInt32.random(in: 0 ... .max))"
            name = abstract ? "@\(unique)" : NSTemporaryDirectory() + unique
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            var bytes = Array(name.utf8)
            if abstract { bytes[0] = 0 }
            withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
            let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count)
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
            }
            guard bound == 0 else { throw POSIXError(.EADDRINUSE) }
            var timeout = timeval(tv_sec: 2, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        }

        deinit {
            close(fd)
            if !name.hasPrefix("@") { unlink(name) }
        }

        /// The next datagram's text, or nil after two seconds of silence.
        func receive() -> String? {
            var buffer = [UInt8](repeating: 0, count: 4096)
            let count = recv(fd, &buffer, buffer.count, 0)
            return count < 0 ? nil : String(decoding: buffer[..<count], as: UTF8.self)
        }
    }

    func testEveryStateReachesAPathSocket() throws {
        let fake = try FakeNotifySocket(abstract: false)
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": fake.name])
        XCTAssertTrue(notifier.isActive)
        notifier.ready(status: "redirecting: tcp:80:8080")
        XCTAssertEqual(fake.receive(), "READY=1\nSTATUS=redirecting: tcp:80:8080")
        notifier.status("busy")
        XCTAssertEqual(fake.receive(), "STATUS=busy")
        notifier.watchdog()
        XCTAssertEqual(fake.receive(), "WATCHDOG=1")
        notifier.stopping()
        XCTAssertEqual(fake.receive(), "STOPPING=1")
    }

    func testReloadingCarriesTheMonotonicClockOfNow() throws {
        let fake = try FakeNotifySocket(abstract: true)
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": fake.name])
        var before = timespec()
        clock_gettime(CLOCK_MONOTONIC, &before)
        notifier.reloading()
        var after = timespec()
        clock_gettime(CLOCK_MONOTONIC, &after)
        let message = try XCTUnwrap(fake.receive())
        let lines = message.split(separator: "\n")
        XCTAssertEqual(lines.first, "RELOADING=1")
        XCTAssertEqual(lines.count, 2)
        let stamp = try XCTUnwrap(lines.last.flatMap { $0.hasPrefix("MONOTONIC_USEC=") ? UInt64($0.dropFirst(15)) : nil })
        let microseconds = { (time: timespec) in UInt64(time.tv_sec) * 1_000_000 + UInt64(time.tv_nsec) / 1000 }
        XCTAssertTrue((microseconds(before)...microseconds(after)).contains(stamp), "\(stamp) not between the clock reads around it")
    }

    func testWithoutNotifySocketNothingIsSent() {
        let notifier = SystemdNotifier(environment: [:])
        XCTAssertFalse(notifier.isActive)
        XCTAssertFalse(notifier.notify("READY=1"))
        XCTAssertNil(notifier.watchdogInterval)
    }

    func testAnUnreachableSocketIsReportedNotFatal() {
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": "/nonexistent/nfqr-notify"])
        XCTAssertFalse(notifier.notify("READY=1"))
    }

    func testWatchdogIntervalIsHalfTheUnitsWatchdogSec() {
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "5000000"])
        XCTAssertEqual(notifier.watchdogInterval, .milliseconds(2500))
        let ours = SystemdNotifier(environment: ["WATCHDOG_USEC": "2000000", "WATCHDOG_PID": String(getpid())])
        XCTAssertEqual(ours.watchdogInterval, .seconds(1))
    }

    func testWatchdogMeantForAnotherProcessIsIgnored() {
        let notifier = SystemdNotifier(environment: ["WATCHDOG_USEC": "2000000", "WATCHDOG_PID": String(getpid() + 1)])
        XCTAssertNil(notifier.watchdogInterval)
        XCTAssertNil(SystemdNotifier(environment: ["WATCHDOG_USEC": "0"]).watchdogInterval)
        XCTAssertNil(SystemdNotifier(environment: ["WATCHDOG_USEC": "soon"]).watchdogInterval)
    }
}
