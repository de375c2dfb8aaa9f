import Glibc
import Kernel
import Logging
import SystemCalls
import XCTest

@testable import Daemon

/// The descriptor store's parsing and decisions (sd_listen_fds semantics, which passed
/// descriptor is offered for what), the socket checks, and FDSTORE=1 with SCM_RIGHTS.
final class FileDescriptorStoreTests: XCTestCase {
    private typealias Entry = FileDescriptorStore.Entry

    func testNamesRoundTrip() {
        XCTAssertEqual(FileDescriptorStore.queueName(7), "nfqueue-7")
        XCTAssertEqual(FileDescriptorStore.queueNumber(in: "nfqueue-7"), 7)
        XCTAssertEqual(FileDescriptorStore.queueNumber(in: "nfqueue-65535"), 65535)
        for bad in ["nfqueue-", "nfqueue-65536", "nfqueue--1", "nfqueue-07", "nfqueue-1x", "lookup", "unknown", "NFQUEUE-1"] {
            XCTAssertNil(FileDescriptorStore.queueNumber(in: bad), bad)
        }
    }

    func testParseTakesDescriptorsFromThreeWithNames() {
        let parsed = FileDescriptorStore.parse(
            environment: ["LISTEN_PID": "42", "LISTEN_FDS": "3", "LISTEN_FDNAMES": "nfqueue-0:nfqueue-1:lookup"], pid: 42)
        XCTAssertNil(parsed.ignored)
        XCTAssertEqual(
            parsed.entries,
            [
                Entry(name: "nfqueue-0", descriptor: 3), Entry(name: "nfqueue-1", descriptor: 4),
                Entry(name: "lookup", descriptor: 5),
            ])
    }

    func testParseFillsMissingNamesWithUnknown() {
        let parsed = FileDescriptorStore.parse(environment: ["LISTEN_PID": "9", "LISTEN_FDS": "3", "LISTEN_FDNAMES": "lookup::"], pid: 9)
        XCTAssertEqual(parsed.entries.map(\.name), ["lookup", "unknown", "unknown"])
        let unnamed = FileDescriptorStore.parse(environment: ["LISTEN_PID": "9", "LISTEN_FDS": "1"], pid: 9)
        XCTAssertEqual(unnamed.entries, [Entry(name: "unknown", descriptor: 3)])
    }

    func testParseRefusesDescriptorsMeantForAnotherProcess() {
        let other = FileDescriptorStore.parse(environment: ["LISTEN_PID": "41", "LISTEN_FDS": "2"], pid: 42)
        XCTAssertEqual(other.entries, [])
        XCTAssertEqual(other.ignored, "LISTEN_PID 41 is not this process (42)")
        XCTAssertEqual(FileDescriptorStore.parse(environment: ["LISTEN_FDS": "2"], pid: 42).entries, [])
        XCTAssertNotNil(FileDescriptorStore.parse(environment: ["LISTEN_FDS": "2"], pid: 42).ignored)
        for bad in ["-1", "x", "99999", ""] {
            let parsed = FileDescriptorStore.parse(environment: ["LISTEN_PID": "42", "LISTEN_FDS": bad], pid: 42)
            XCTAssertEqual(parsed.entries, [], bad)
            XCTAssertNotNil(parsed.ignored, bad)
        }
        let none = FileDescriptorStore.parse(environment: [:], pid: 42)
        XCTAssertEqual(none.entries, [])
        XCTAssertNil(none.ignored)
    }

    func testPlanOffersWantedQueuesAndTheListenerOnce() {
        let entries = [
            Entry(name: "nfqueue-0", descriptor: 3), Entry(name: "nfqueue-5", descriptor: 4),
            Entry(name: "lookup", descriptor: 5), Entry(name: "nfqueue-0", descriptor: 6),
            Entry(name: "unknown", descriptor: 7), Entry(name: "nfqueue-1", descriptor: 8),
        ]
        let plan = FileDescriptorStore.plan(entries, wantedQueues: [0, 1, 2])
        XCTAssertEqual(plan.offered, ["nfqueue-0": 3, "nfqueue-1": 8, "lookup": 5])
        // nfqueue-5 is no longer configured; a second nfqueue-0 and an unnamed one are not ours.
        XCTAssertEqual(
            plan.dropped,
            [
                Entry(name: "nfqueue-5", descriptor: 4), Entry(name: "nfqueue-0", descriptor: 6),
                Entry(name: "unknown", descriptor: 7),
            ])
    }

    func testInspectTellsAListenerFromOtherSockets() throws {
        let path = NSTemporaryDirectory() + "nfqr-fdstore-\(getpid())-\(UInt32.random(in: 0 ... .max)).sock"
        defer { unlink(path) }
        let listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(listener) }
        XCTAssertEqual(UnixSocketAddress.withAddress(path: path) { bind(listener, $0, $1) }, 0)
        let bound = try XCTUnwrap(AdoptedSocket.inspect(listener))
        XCTAssertEqual(bound.notAListener(at: path), "not listening")
        XCTAssertEqual(listen(listener, 4), 0)
        let listening = try XCTUnwrap(AdoptedSocket.inspect(listener))
        XCTAssertNil(listening.notAListener(at: path))
        XCTAssertEqual(listening.notAListener(at: path + ".other"), "bound to \(path), not \(path).other")
        XCTAssertEqual(listening.notAQueueSocket, "not a netlink socket (family \(AF_UNIX))")

        let datagram = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(datagram) }
        XCTAssertEqual(AdoptedSocket.inspect(datagram)?.notAListener(at: path), "not a stream socket (type \(SOCK_DGRAM.rawValue))")
        let file = open("/dev/null", O_RDONLY)
        defer { close(file) }
        XCTAssertNil(AdoptedSocket.inspect(file), "/dev/null is not a socket")
        let netlink = socket(AF_NETLINK, Int32(SOCK_RAW.rawValue), 0 /* NETLINK_ROUTE */)
        defer { close(netlink) }
        XCTAssertEqual(AdoptedSocket.inspect(netlink)?.notAQueueSocket, "a netlink socket of protocol 0, not NETLINK_NETFILTER")
    }

    /// FDSTORE=1 + FDNAME: the message and the descriptor arrive together (SCM_RIGHTS).
    func testKeepSendsEachDescriptorWithItsName() throws {
        let path = NSTemporaryDirectory() + "nfqr-fdstore-notify-\(getpid())-\(UInt32.random(in: 0 ... .max))"
        defer { unlink(path) }
        let manager = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(manager) }
        XCTAssertEqual(UnixSocketAddress.withAddress(path: path) { bind(manager, $0, $1) }, 0)
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(manager, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": path])
        let store = FileDescriptorStore(environment: [:], notifier: notifier, logger: Logger(label: "test"))
        let pipeEnds = UnsafeMutablePointer<Int32>.allocate(capacity: 2)
        defer { pipeEnds.deallocate() }
        XCTAssertEqual(pipe(pipeEnds), 0)
        defer {
            close(pipeEnds[0])
            close(pipeEnds[1])
        }
        store.keep([(name: "lookup", descriptor: pipeEnds[1])])

        var text = [UInt8](repeating: 0, count: 256)
        let control = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 8)
        defer { control.deallocate() }
        let received = text.withUnsafeMutableBytes { buffer -> Int in
            var vector = iovec(iov_base: buffer.baseAddress, iov_len: buffer.count)
            return withUnsafeMutablePointer(to: &vector) { vectorPointer in
                var message = msghdr()
                message.msg_iov = vectorPointer
                message.msg_iovlen = 1
                message.msg_control = control.baseAddress
                message.msg_controllen = control.count
                return recvmsg(manager, &message, 0)
            }
        }
        XCTAssertGreaterThan(received, 0)
        XCTAssertEqual(String(decoding: text.prefix(max(received, 0)), as: UTF8.self), "FDSTORE=1\nFDNAME=lookup")
        let header = control.load(as: cmsghdr.self)
        XCTAssertEqual(header.cmsg_level, SOL_SOCKET)
        XCTAssertEqual(header.cmsg_type, Int32(SCM_RIGHTS))
        XCTAssertEqual(header.cmsg_len, MemoryLayout<cmsghdr>.size + 4)
        let passed = control.load(fromByteOffset: MemoryLayout<cmsghdr>.size, as: Int32.self)
        defer { close(passed) }
        // The manager's copy is the same pipe: what goes in one end comes out of the other.
        XCTAssertEqual(write(passed, "x", 1), 1)
        var byte: UInt8 = 0
        XCTAssertEqual(read(pipeEnds[0], &byte, 1), 1)
        XCTAssertEqual(byte, UInt8(ascii: "x"))

        store.empty()
        let removal = recv(manager, &text, text.count, 0)
        XCTAssertEqual(String(decoding: text.prefix(max(removal, 0)), as: UTF8.self), "FDSTOREREMOVE=1\nFDNAME=lookup")
    }
}
