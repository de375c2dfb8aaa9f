import Dispatch
import Glibc
import Logging
import NFQRedirectClient
import RedirectCore
import SystemCalls
import XCTest

@testable import Daemon

/// The real LookupServer on a Unix socket, against a fixed table: pipelining, hostile framing,
/// half-closed clients and max_clients.
final class LookupServerTests: XCTestCase {
    /// Knows one redirected TCP flow: 192.0.2.2:40000 -> 192.0.2.1:8080, originally 203.0.113.10:80,
    /// and calls every UDP flow from port 9 redirected from 198.51.100.9:53.
    private final class FixedBackend: LookupBackend, @unchecked Sendable {
        static let client = Endpoint(IPAddress("192.0.2.2")!, 40000)
        static let local = Endpoint(IPAddress("192.0.2.1")!, 8080)

        func lookup(proto: TransportProtocol, client: Endpoint, local: Endpoint) -> LookupAnswer {
            if proto == .udp && client.port == 9 { return .original(Endpoint(IPAddress("198.51.100.9")!, 53)) }
            return proto == .tcp && client == Self.client && local == Self.local
                ? .original(Endpoint(IPAddress("203.0.113.10")!, 80)) : .notFound
        }
        func flowLines(_ format: LookupRequest.OutputFormat) -> [String] { ["flow one", "flow two"] }
        func statisticsLines(_ format: LookupRequest.OutputFormat) -> [String] { ["requests 1"] }
        var versionLine: String { "nfq-redirect test protocol 1" }
        func drainEvents() -> [FlowEvent] { [] }
    }

    private static let found = "LOOKUP tcp 192.0.2.2 40000 192.0.2.1 8080\n"
    private var server: LookupServer!
    private var path = ""

    override func setUpWithError() throws {
        path = "/tmp/nfqr-lookup-server-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        let settings = LookupServer.Settings(
            path: path, mode: 0o600, group: nil,
            access: LookupAccessPolicy(allowAll: true, uids: [], gids: []),
            maxClients: 4, idleTimeoutSeconds: 300)
        server = LookupServer(settings: settings, backend: FixedBackend(), logger: Logger(label: "test"))
        try server.start()
    }

    override func tearDown() {
        server.stop()
    }

    private func connectClient() throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let result = UnixSocketAddress.withAddress(path: path) { connect(fd, $0, $1) }
        XCTAssertEqual(result, 0, "connect: \(String(cString: strerror(errno)))")
        return fd
    }

    private func send(_ fd: Int32, _ text: String) {
        let bytes = Array(text.utf8)
        XCTAssertEqual(bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }, bytes.count)
    }

    /// Reads until `count` lines or end of file; returns the lines and whether the end came.
    private func readLines(_ fd: Int32, _ count: Int) -> (lines: [String], closed: Bool) {
        var data: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while data.filter({ $0 == UInt8(ascii: "\n") }).count < count {
            let got = recv(fd, &buffer, buffer.count, 0)
            if got <= 0 { return (lines(data), true) }
            data += buffer[0..<got]
        }
        return (lines(data), false)
    }

    private func lines(_ data: [UInt8]) -> [String] {
        String(decoding: data, as: UTF8.self).split(separator: "\n").map(String.init)
    }

    func testPipelinedRequestsAreAnsweredInOrder() throws {
        let fd = try connectClient()
        defer { close(fd) }
        send(fd, Self.found + "NONSENSE\n" + "LOOKUP udp 192.0.2.2 40000 192.0.2.1 8080\r\nVERSION\n" + Self.found)
        XCTAssertEqual(
            readLines(fd, 5).lines,
            [
                "OK 203.0.113.10 80", "ERR BADREQUEST unknown command NONSENSE",
                "ERR NOTFOUND", "OK nfq-redirect test protocol 1", "OK 203.0.113.10 80",
            ])
    }

    func testABusyPollingServerAnswersAgainAfterItSleptAndStops() throws {
        server.stop()
        let settings = LookupServer.Settings(
            path: path, mode: 0o600, group: nil,
            access: LookupAccessPolicy(allowAll: true, uids: [], gids: []),
            maxClients: 4, idleTimeoutSeconds: 300, busyPoll: .milliseconds(20))
        server = LookupServer(settings: settings, backend: FixedBackend(), logger: Logger(label: "test"))
        try server.start()
        let fd = try connectClient()
        defer { close(fd) }
        send(fd, Self.found)
        XCTAssertEqual(readLines(fd, 1).lines, ["OK 203.0.113.10 80"], "answered while polling")
        usleep(50_000)  // past the 20 ms of polling: the thread sleeps in epoll again
        send(fd, Self.found)
        XCTAssertEqual(readLines(fd, 1).lines, ["OK 203.0.113.10 80"], "answered after it slept")
    }

    func testByteAtATimeWriterIsAnswered() throws {
        let fd = try connectClient()
        defer { close(fd) }
        for byte in Self.found.utf8 { send(fd, String(UnicodeScalar(byte))) }
        XCTAssertEqual(readLines(fd, 1).lines, ["OK 203.0.113.10 80"])
    }

    func testOversizedLineGetsOneErrorAndTheConnectionGoesOn() throws {
        let fd = try connectClient()
        defer { close(fd) }
        send(fd, String(repeating: "x", count: 200_000))
        send(fd, "\n" + Self.found)
        XCTAssertEqual(readLines(fd, 2).lines, ["ERR BADREQUEST line longer than 512 bytes", "OK 203.0.113.10 80"])
    }

    func testBinaryGarbageIsRefusedLineByLine() throws {
        let fd = try connectClient()
        defer { close(fd) }
        var garbage: [UInt8] = (0..<4096).map { _ in UInt8.random(in: 0...255) }
        garbage.removeAll { $0 == UInt8(ascii: "\n") }
        garbage += Array("\n\u{0}\u{1}\u{7f}\n".utf8) + Array(Self.found.utf8)
        XCTAssertEqual(garbage.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, 0) }, garbage.count)
        let answers = readLines(fd, 3).lines
        XCTAssertEqual(answers.count, 3)
        XCTAssertTrue(answers.prefix(2).allSatisfy { $0.hasPrefix("ERR BADREQUEST ") }, "\(answers)")
        XCTAssertEqual(answers.last, "OK 203.0.113.10 80")
    }

    func testHalfClosedClientGetsItsAnswersThenTheEnd() throws {
        let fd = try connectClient()
        defer { close(fd) }
        send(fd, Self.found + Self.found + "LIST\n")
        shutdown(fd, Int32(SHUT_WR))
        let (answers, closed) = readLines(fd, 10)
        XCTAssertEqual(answers, ["OK 203.0.113.10 80", "OK 203.0.113.10 80", "flow one", "flow two", "END 2"])
        XCTAssertTrue(closed)
    }

    func testClientsBeyondMaxClientsGetBusy() throws {
        let held = try (0..<4).map { _ in try connectClient() }
        defer { held.forEach { close($0) } }
        for fd in held {  // each admitted client is served
            send(fd, "VERSION\n")
            XCTAssertEqual(readLines(fd, 1).lines, ["OK nfq-redirect test protocol 1"])
        }
        let extra = try connectClient()
        defer { close(extra) }
        let (answers, closed) = readLines(extra, 2)
        XCTAssertEqual(answers, ["ERR BUSY"])
        XCTAssertTrue(closed)
        XCTAssertEqual(server.counters.rejectedTooMany.load, 1)
    }

    func testSwiftClientAsksEveryWay() throws {
        let client = try LookupClient(socketPath: path)
        XCTAssertEqual(
            try client.lookup(.tcp, client: FixedBackend.client, local: FixedBackend.local),
            .original(Endpoint(IPAddress("203.0.113.10")!, 80)))
        XCTAssertEqual(try client.lookup(.udp, client: FixedBackend.client, local: FixedBackend.local), .notFound)
        XCTAssertEqual(try client.collect(.list(.text)), ["flow one", "flow two"])
        XCTAssertEqual(try client.request(.version), "OK nfq-redirect test protocol 1")
        // LOOKUPFD: the server reads the tuple from the passed socket (a connected UDP socket to port 9).
        let udp = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(udp) }
        var peer = sockaddr_in()
        peer.sin_family = sa_family_t(AF_INET)
        peer.sin_port = UInt16(9).bigEndian
        peer.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        let connected = withUnsafePointer(to: &peer) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(udp, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        XCTAssertEqual(connected, 0)
        XCTAssertEqual(try client.lookup(socket: udp), .original(Endpoint(IPAddress("198.51.100.9")!, 53)))
    }

    /// A daemon that accepted a lookup and died without answering: with the request unread its
    /// end resets, with it read it closes. The client asks once more on a new connection, which
    /// the successor answers from the kept listener (docs/lookup-protocol.md); a second death
    /// is `.connectionClosed`.
    func testSwiftClientAsksOnceMoreWhenTheDaemonDiedAfterAccepting() throws {
        let answered = LookupAnswer.original(Endpoint(IPAddress("203.0.113.10")!, 80))
        for dying in [DyingDaemon.Ending.reset, .close] {
            XCTAssertEqual(
                try DyingDaemon.lookup(path + ".dying", FixedBackend.client, FixedBackend.local, endings: [dying, .answer("OK 203.0.113.10 80")]),
                .success(answered), "\(dying)")
        }
        XCTAssertEqual(
            try DyingDaemon.lookup(path + ".dying", FixedBackend.client, FixedBackend.local, endings: [.reset, .close]), .failure(.connectionClosed),
            "died twice")
    }

    func testSwiftClientNamesAMissingDaemon() {
        XCTAssertThrowsError(try LookupClient(socketPath: path + ".absent")) { error in
            XCTAssertEqual(error as? LookupClient.Failure, .daemonNotRunning(path: path + ".absent"))
        }
    }
}

/// A listener whose connections each end as told: a lookup server that dies after accepting,
/// then its successor on the same listener.
private enum DyingDaemon {
    enum Ending { case reset, close, answer(String) }

    /// The outcome of one `LookupClient.lookup` of `client -> local` against connections
    /// ending as `endings`.
    static func lookup(_ path: String, _ client: Endpoint, _ local: Endpoint, endings: [Ending]) throws -> Result<LookupAnswer, LookupClient.Failure>
    {
        let listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer {
            close(listener)
            unlink(path)
        }
        XCTAssertEqual(UnixSocketAddress.withAddress(path: path) { bind(listener, $0, $1) }, 0)
        XCTAssertEqual(listen(listener, 2), 0)
        let served = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            defer { served.signal() }
            for ending in endings {
                let accepted = accept(listener, nil, nil)
                guard accepted >= 0 else { return }
                defer { close(accepted) }
                var ready = pollfd(fd: accepted, events: Int16(POLLIN), revents: 0)
                guard poll(&ready, 1, 5000) == 1 else { return }
                var request = [UInt8](repeating: 0, count: 256)
                switch ending {
                case .reset: break  // closed with the request unread
                case .close: _ = recv(accepted, &request, request.count, 0)
                case .answer(let line):
                    _ = recv(accepted, &request, request.count, 0)
                    _ = Array((line + "\n").utf8).withUnsafeBytes { send(accepted, $0.baseAddress, $0.count, 0) }
                }
            }
        }
        let lookupClient = try LookupClient(socketPath: path)
        let outcome = Result { () throws(LookupClient.Failure) in try lookupClient.lookup(.tcp, client: client, local: local) }
        XCTAssertEqual(served.wait(timeout: .now() + 5), .success, "every connection served")
        return outcome
    }
}
