import CNFQShim
import Glibc
import Logging
import NFQRedirectClient
import RedirectCore

/// The lookup service on its Unix stream socket (docs/lookup-protocol.md): one thread, epoll,
/// non-blocking sockets. It never touches the datapath's queues; it reads the shared flow table
/// under a shard lock for the length of one lookup, so neither side can stall the other.
public final class LookupServer: @unchecked Sendable {
    public struct Settings: Sendable {
        public var path: String
        public var mode: mode_t
        public var group: gid_t?
        var access: LookupAccessPolicy
        public var maxClients: Int
        public var idleTimeoutSeconds: Int
    }

    private let settings: Settings
    private let backend: LookupBackend
    private let logger: Logger
    public let counters = LookupCounters()
    private var listenFD: Int32 = -1
    private var epollFD: Int32 = -1
    private var wakeFD: Int32 = -1
    private var connections: [Int32: LookupConnection] = [:]
    private var thread: pthread_t?

    init(settings: Settings, backend: LookupBackend, logger: Logger) {
        self.settings = settings
        self.backend = backend
        self.logger = logger
    }

    /// Binds and listens (replacing a stale socket file), then serves on a thread of its own.
    public func start() throws(LookupServerError) {
        try bindSocket()
        epollFD = nfqr_epoll_create()
        wakeFD = nfqr_eventfd()
        guard epollFD >= 0, wakeFD >= 0 else { throw .system("epoll/eventfd", errno) }
        watch(listenFD, events: Self.readable)
        watch(wakeFD, events: Self.readable)
        thread = startThread(name: "nfqr-lookup") { [self] in serve() }
    }

    /// Stops serving, closes every client and removes the socket file.
    public func stop() {
        guard let thread else { return }
        var one: UInt64 = 1
        _ = write(wakeFD, &one, 8)
        pthread_join(thread, nil)
        self.thread = nil
        for connection in connections.values { connection.closeAll() }
        connections.removeAll()
        close(listenFD)
        close(epollFD)
        close(wakeFD)
        unlink(settings.path)
    }

    private func bindSocket() throws(LookupServerError) {
        let directory = String(settings.path[..<(settings.path.lastIndex(of: "/") ?? settings.path.startIndex)])
        if !directory.isEmpty { mkdir(directory, 0o755) }
        listenFD = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard listenFD >= 0 else { throw .system("socket", errno) }
        // A socket file left by a previous run that nobody listens on any more is ours to replace.
        unlink(settings.path)
        let bound = UnixSocketAddress.withAddress(path: settings.path) { address, length in
            bind(listenFD, address, length)
        }
        guard bound == 0 else { throw .system("bind \(settings.path)", errno) }
        if let group = settings.group, chown(settings.path, uid_t.max, group) != 0 {
            throw .system("chown \(settings.path)", errno)
        }
        guard chmod(settings.path, settings.mode) == 0 else { throw .system("chmod \(settings.path)", errno) }
        guard listen(listenFD, 512) == 0 else { throw .system("listen", errno) }
    }

    private static let readable = UInt32(NFQR_EPOLLIN)
    private static let clientEvents = UInt32(NFQR_EPOLLIN | NFQR_EPOLLRDHUP)

    private func watch(_ fd: Int32, events: UInt32) {
        nfqr_epoll_control(epollFD, fd, Int64(events))
    }

    private func rewatch(_ connection: LookupConnection) {
        let events = Self.clientEvents | (connection.hasPendingOutput ? UInt32(NFQR_EPOLLOUT) : 0)
        nfqr_epoll_control(epollFD, connection.fd, Int64(events))
    }

    private func serve() {
        var readyFDs = [Int32](repeating: 0, count: 64)
        var readyEvents = [UInt32](repeating: 0, count: 64)
        var lastSweep = monotonicSeconds()
        var lastDrain = monotonicMilliseconds()
        while true {
            // Events are drained from the table every 100 ms while someone follows them.
            let subscribers = connections.values.contains { $0.subscribedEvents != nil }
            let ready = nfqr_epoll_wait(epollFD, &readyFDs, &readyEvents, 64, subscribers ? 100 : 1000)
            if ready < 0 && errno != EINTR { logger.error("lookup: epoll_wait failed: \(String(cString: strerror(errno)))"); return }
            for index in 0..<max(0, Int(ready)) {
                let fd = readyFDs[index]
                if fd == wakeFD { return }
                if fd == listenFD {
                    acceptClients()
                } else if let connection = connections[fd] {
                    service(connection, events: readyEvents[index])
                }
            }
            // Drained every 100 ms, even without subscribers, so a new one gets no stale history.
            let nowMilliseconds = monotonicMilliseconds()
            if nowMilliseconds - lastDrain >= 100 {
                lastDrain = nowMilliseconds
                deliver(backend.drainEvents())
            }
            let now = monotonicSeconds()
            if now != lastSweep {
                lastSweep = now
                closeIdle(now: now)
            }
        }
    }

    private func acceptClients() {
        while true {
            let fd = nfqr_accept_nonblocking(listenFD)
            if fd < 0 {
                if errno == EINTR { continue }
                if errno != EAGAIN { counters.acceptErrors.add(1) }
                return
            }
            guard connections.count < settings.maxClients else {
                counters.rejectedTooMany.add(1)
                close(fd)
                continue
            }
            let peer = PeerCredentials.of(socket: fd)
            let allowed = peer.map(settings.access.allows) ?? false
            if !allowed { counters.deniedPeers.add(1) }
            let connection = LookupConnection(fd: fd, peer: peer, allowed: allowed, now: monotonicSeconds())
            connections[fd] = connection
            counters.clients.add(1)
            watch(fd, events: Self.clientEvents)
        }
    }

    private func service(_ connection: LookupConnection, events: UInt32) {
        if events & UInt32(NFQR_EPOLLIN | NFQR_EPOLLRDHUP | NFQR_EPOLLHUP | NFQR_EPOLLERR) != 0 {
            if !readAvailable(connection) {
                disconnect(connection)
                return
            }
        }
        if connection.hasPendingOutput && !flush(connection) {
            disconnect(connection)
            return
        }
        if connection.closeAfterFlush && !connection.hasPendingOutput {
            disconnect(connection)
            return
        }
        rewatch(connection)
    }

    /// Reads what is there (with any passed descriptors) and answers every complete line.
    /// Returns false when the client is gone or must be dropped.
    private func readAvailable(_ connection: LookupConnection) -> Bool {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = UnixSocketAddress.receive(connection.fd, into: &buffer) { descriptor in
                if connection.passedDescriptors.count < 16 {
                    connection.passedDescriptors.append(descriptor)
                } else {
                    close(descriptor)
                }
            }
            if count == 0 { return false }
            if count < 0 {
                if errno == EINTR { continue }
                return errno == EAGAIN
            }
            connection.lastActivity = monotonicSeconds()
            consume(buffer[0..<count], from: connection)
            if connection.output.count - connection.outputOffset > LookupConnection.outputLimit {
                counters.droppedSlowClients.add(1)
                return false
            }
        }
    }

    private func consume(_ bytes: ArraySlice<UInt8>, from connection: LookupConnection) {
        var rest = bytes
        while let newline = rest.firstIndex(of: UInt8(ascii: "\n")) {
            let piece = rest[rest.startIndex..<newline]
            rest = rest[(newline + 1)...]
            if connection.discardingLine {
                connection.discardingLine = false
                connection.input.removeAll(keepingCapacity: true)
                continue
            }
            connection.input.append(contentsOf: piece)
            handle(line: connection.input, from: connection)
            connection.input.removeAll(keepingCapacity: true)
        }
        guard !connection.discardingLine else { return }
        connection.input.append(contentsOf: rest)
        if connection.input.count > LookupRequest.maximumLineLength {
            counters.badRequests.add(1)
            connection.queue(LookupAnswer.badRequest(LookupRequestError.lineTooLong.description).line)
            connection.input.removeAll(keepingCapacity: true)
            connection.discardingLine = true
        }
    }

    private func handle(line: [UInt8], from connection: LookupConnection) {
        counters.requests.add(1)
        guard connection.allowed else {
            connection.queue(LookupAnswer.denied.line)
            return
        }
        let request: LookupRequest
        do {
            guard let text = String(validating: line, as: UTF8.self) else { throw LookupRequestError.notPrintable }
            request = try LookupRequest(parsing: text)
        } catch let error as LookupRequestError {
            counters.badRequests.add(1)
            connection.queue(LookupAnswer.badRequest(error.description).line)
            return
        } catch {
            return
        }
        switch request {
        case .lookup(let proto, let client, let local):
            answer(backend.lookup(proto: proto, client: client, local: local), to: connection)
        case .lookupDescriptor:
            guard !connection.passedDescriptors.isEmpty else {
                counters.badRequests.add(1)
                connection.queue(LookupAnswer.badRequest("LOOKUPFD needs the socket attached as SCM_RIGHTS").line)
                return
            }
            let descriptor = connection.passedDescriptors.removeFirst()
            defer { close(descriptor) }
            switch SocketTuple.of(descriptor) {
            case .success(let tuple):
                answer(backend.lookup(proto: tuple.proto, client: tuple.peer, local: tuple.local), to: connection)
            case .failure(let why):
                counters.badRequests.add(1)
                connection.queue(LookupAnswer.badRequest(why.description).line)
            }
        case .list(let format):
            let lines = backend.flowLines(format)
            connection.pendingLines = ArraySlice(lines + ["END \(lines.count)"])
            connection.refillFromPendingLines()
        case .stats(let format):
            for line in backend.statisticsLines(format) { connection.queue(line + "\n") }
            connection.queue("END\n")
        case .events(let format):
            connection.subscribedEvents = format
            connection.queue("OK subscribed\n")
        case .version:
            connection.queue("OK \(backend.versionLine)\n")
        }
    }

    private func answer(_ answer: LookupAnswer, to connection: LookupConnection) {
        counters.count(answer)
        connection.queue(answer.line)
    }

    private func deliver(_ events: [FlowEvent]) {
        guard !events.isEmpty else { return }
        for connection in connections.values {
            guard let format = connection.subscribedEvents else { continue }
            for event in events { connection.queue(FlowFormatting.line(for: event, format: format) + "\n") }
            if connection.output.count - connection.outputOffset > LookupConnection.outputLimit {
                counters.droppedSlowClients.add(1)
                disconnect(connection)
                continue
            }
            if !flush(connection) { disconnect(connection); continue }
            rewatch(connection)
        }
    }

    /// Writes what the socket takes now. Returns false when the client is gone.
    private func flush(_ connection: LookupConnection) -> Bool {
        while connection.hasPendingOutput {
            connection.refillFromPendingLines()
            let written = connection.output[connection.outputOffset...].withUnsafeBytes { bytes in
                send(connection.fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL))
            }
            if written < 0 {
                if errno == EINTR { continue }
                return errno == EAGAIN
            }
            connection.outputOffset += written
            if connection.outputOffset == connection.output.count {
                connection.output.removeAll(keepingCapacity: true)
                connection.outputOffset = 0
            }
        }
        return true
    }

    private func closeIdle(now: Int) {
        for connection in Array(connections.values)
        where connection.subscribedEvents == nil && now - connection.lastActivity > settings.idleTimeoutSeconds {
            counters.idleDisconnects.add(1)
            disconnect(connection)
        }
    }

    private func disconnect(_ connection: LookupConnection) {
        nfqr_epoll_control(epollFD, connection.fd, -1)
        connections[connection.fd] = nil
        counters.clients.add(-1)
        connection.closeAll()
    }
}

public enum LookupServerError: Error, CustomStringConvertible {
    case system(String, Int32)

    public var description: String {
        switch self {
        case .system(let what, let code): "\(what): \(String(cString: strerror(code)))"
        }
    }
}
