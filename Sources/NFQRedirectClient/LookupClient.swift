import Glibc
import RedirectCore
import SystemCalls

/// A blocking client of the daemon's lookup socket, for proxies written in Swift and for the
/// `nfq-redirect` CLI. One connection, many requests (the protocol answers in order).
/// Not thread-safe: use one client per thread.
public final class LookupClient {
    public static let defaultSocketPath = "/run/nfq-redirect/lookup.sock"

    private let socketPath: String
    private let timeoutSeconds: Int
    /// -1 only after a failed reconnection (`ask`).
    private var fd: Int32
    private var buffered: [UInt8] = []

    public enum Failure: Error, Equatable, CustomStringConvertible {
        case daemonNotRunning(path: String)
        case permissionDenied(path: String)
        case connectFailed(path: String, code: Int32)
        case timedOut
        /// Closed or reset by the daemon. Before an answer's first byte this is a daemon that
        /// accepted and then died (a crash, a watchdog abort): a new connection reaches its
        /// successor. The lookups ask once more themselves; other requests may be asked again
        /// (docs/lookup-protocol.md).
        case connectionClosed
        case malformedAnswer(String)
        case denied
        case busy
        case system(String, Int32)

        public var description: String {
            switch self {
            case .daemonNotRunning(let path): "nfq-redirectd is not running (nothing listens on \(path))"
            case .permissionDenied(let path): "permission denied on \(path) (check the socket's group and mode, or ask as root)"
            case .connectFailed(let path, let code): "cannot connect to \(path): \(String(cString: strerror(code)))"
            case .timedOut: "the daemon did not answer in time"
            case .connectionClosed: "the daemon closed the connection (before answering: ask again on a new connection)"
            case .malformedAnswer(let line): "unexpected answer from the daemon: \(line)"
            case .denied: "access denied: this user is not on the daemon's allow list ([lookup] allow_users / allow_groups)"
            case .busy: "the daemon has its maximum of clients ([lookup] max_clients); try again"
            case .system(let call, let code): "\(call): \(String(cString: strerror(code)))"
            }
        }
    }

    /// Connects to the daemon. `timeout` bounds every later read and write.
    public init(socketPath: String = LookupClient.defaultSocketPath, timeoutSeconds: Int = 5) throws(Failure) {
        self.socketPath = socketPath
        self.timeoutSeconds = timeoutSeconds
        fd = try Self.connect(socketPath, timeoutSeconds: timeoutSeconds)
    }

    private static func connect(_ socketPath: String, timeoutSeconds: Int) throws(Failure) -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .system("socket", errno) }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        // connect is not retried on EINTR: the connection goes on in the background.
        let connected = UnixSocketAddress.withAddress(path: socketPath) { address, length in Glibc.connect(fd, address, length) }
        guard let connected else {
            close(fd)
            throw .connectFailed(path: socketPath, code: ENAMETOOLONG)
        }
        if connected != 0 {
            let code = errno
            close(fd)
            switch code {
            case ENOENT, ECONNREFUSED: throw .daemonNotRunning(path: socketPath)
            case EACCES, EPERM: throw .permissionDenied(path: socketPath)
            default: throw .connectFailed(path: socketPath, code: code)
            }
        }
        return fd
    }

    deinit { if fd >= 0 { close(fd) } }

    /// Where the connection `client -> local` was really going.
    public func lookup(_ proto: TransportProtocol, client: Endpoint, local: Endpoint) throws(Failure) -> LookupAnswer {
        try ask(LookupRequest.lookup(proto: proto, client: client, local: local).line, descriptor: nil)
    }

    /// Where the connection of the accepted socket `socket` was really going. The socket is
    /// passed to the daemon (SCM_RIGHTS), which reads the tuple itself.
    public func lookup(socket: Int32) throws(Failure) -> LookupAnswer {
        try ask(LookupRequest.lookupDescriptor.line, descriptor: socket)
    }

    /// One lookup, asked once more on a new connection when this one is closed or reset before
    /// any byte of the answer: a daemon that died after accepting it (a crash, a watchdog
    /// abort). The listener outlives it in systemd's descriptor store, so the successor answers
    /// (docs/lookup-protocol.md). A lookup is idempotent; a passed socket is passed again. The
    /// preload library does the same.
    private func ask(_ line: String, descriptor: Int32?) throws(Failure) -> LookupAnswer {
        do {
            try send(line, descriptor: descriptor)
            return try readAnswer()
        } catch .connectionClosed where buffered.isEmpty {
            close(fd)
            fd = -1
            fd = try Self.connect(socketPath, timeoutSeconds: timeoutSeconds)
            try send(line, descriptor: descriptor)
            return try readAnswer()
        }
    }

    /// Sends a request whose answer is lines up to `END ...` (LIST, STATS); returns them.
    public func collect(_ request: LookupRequest) throws(Failure) -> [String] {
        try send(request.line, descriptor: nil)
        var lines: [String] = []
        while true {
            let line = try readLine()
            if line == "END" || line.hasPrefix("END ") { return lines }
            if line.hasPrefix("ERR ") { try Self.refusal(line) }
            lines.append(line)
        }
    }

    /// Sends one request and returns its single answer line (VERSION, EVENTS' "OK subscribed").
    public func request(_ request: LookupRequest) throws(Failure) -> String {
        try send(request.line, descriptor: nil)
        let line = try readLine()
        if line.hasPrefix("ERR ") { try Self.refusal(line) }
        return line
    }

    /// An ERR line where an answer was expected: why the daemon refused.
    private static func refusal(_ line: String) throws(Failure) -> Never {
        switch LookupAnswer(parsing: line) {
        case .denied: throw .denied
        case .busy: throw .busy
        default: throw .malformedAnswer(line)
        }
    }

    /// Reads one line (without its newline).
    public func readLine() throws(Failure) -> String {
        while true {
            if let newline = buffered.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: buffered[..<newline], as: UTF8.self)
                buffered.removeSubrange(...newline)
                return line
            }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let outcome: SyscallResult<Int>
            do {
                outcome = try syscall("recv") { recv(fd, &chunk, chunk.count, 0) }
            } catch {
                if error.errno == .connectionReset { throw .connectionClosed }  // it died with the request unread
                throw .system(error.call, error.errno.rawValue)
            }
            guard case .completed(let count) = outcome else { throw .timedOut }  // SO_RCVTIMEO passed
            if count == 0 { throw .connectionClosed }
            buffered.append(contentsOf: chunk[0..<count])
        }
    }

    private func readAnswer() throws(Failure) -> LookupAnswer {
        let line = try readLine()
        guard let answer = LookupAnswer(parsing: line) else { throw .malformedAnswer(line) }
        return answer
    }

    private func send(_ line: String, descriptor: Int32?) throws(Failure) {
        let bytes = Array(line.utf8)
        let outcome: SyscallResult<Int>
        do {
            outcome = try syscall("sendmsg") {
                bytes.withUnsafeBytes { UnixSocketAddress.send(fd, $0, descriptor: descriptor, flags: Int32(MSG_NOSIGNAL)) }
            }
        } catch {
            if error.errno == .brokenPipe || error.errno == .connectionReset { throw .connectionClosed }
            throw .system(error.call, error.errno.rawValue)
        }
        guard case .completed(let sent) = outcome else { throw .timedOut }  // SO_SNDTIMEO passed
        if sent != bytes.count { throw .connectionClosed }
    }
}
