import CSystemCalls
import Glibc
import Logging
import NFQRedirectClient
import RedirectCore
import SystemCalls

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
        /// How long to keep asking for requests (epoll without sleeping) before sleeping.
        public var busyPoll: Duration = .zero
        /// A listening socket at `path` kept by the service manager (checked by
        /// `FileDescriptorStore.takeListener`): served as it is, not bound again.
        public var adoptedListener: Int32? = nil
    }

    private let settings: Settings
    private let backend: LookupBackend
    private let logger: Logger
    public let counters = LookupCounters()
    private var listenFD: Int32 = -1
    private var epollFD: Int32 = -1
    private var wakeUp: WakeUpChannel?
    private var connections: [Int32: LookupConnection] = [:]
    private var subscriberCount = 0
    private var thread: pthread_t?
    /// Seconds on the monotonic clock, read once per wakeup.
    private var now = 0
    /// Held so that, out of descriptors, a pending connection can still be accepted and refused.
    private var reserveFD: Int32 = -1
    /// Scratch space for reads, shared by every client: only the server thread uses it.
    private let receiveBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)
    private let controlBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: UnixSocketAddress.controlLength, alignment: 16)

    private static let busyLine = LookupAnswer.busy.line

    init(settings: Settings, backend: LookupBackend, logger: Logger) {
        self.settings = settings
        self.backend = backend
        self.logger = logger
    }

    deinit {
        receiveBuffer.deallocate()
        controlBuffer.deallocate()
    }

    /// Binds and listens (replacing a stale socket file), then serves on a thread of its own.
    public func start() throws(LookupServerError) {
        raiseDescriptorLimit()
        try bindSocket()
        reserveFD = open("/dev/null", O_RDONLY | O_CLOEXEC)
        let wakeUp: WakeUpChannel
        do {
            epollFD = try syscallCompleting("epoll_create1") { nfqr_epoll_create() }
            wakeUp = try WakeUpChannel()
        } catch {
            throw .system(error.call, error.errno.rawValue)
        }
        self.wakeUp = wakeUp
        watch(listenFD, events: Self.readable)
        watch(wakeUp.descriptor, events: Self.readable)
        thread = startThread(name: "nfqr-lookup") { [self] in serve() }
    }

    /// The listening socket, for the service manager's descriptor store (nil before `start`).
    public var listeningDescriptor: Int32? { listenFD >= 0 ? listenFD : nil }

    /// Stops serving, closes every client and removes the socket file (`removeSocketFile:
    /// false` leaves it for a successor adopting the listener from the descriptor store).
    public func stop(removeSocketFile: Bool = true) {
        guard let thread else { return }
        wakeUp?.signal()
        pthread_join(thread, nil)
        self.thread = nil
        for connection in connections.values { connection.closeAll() }
        connections.removeAll()
        close(listenFD)
        close(epollFD)
        wakeUp = nil
        close(reserveFD)
        if removeSocketFile { unlink(settings.path) }
    }

    /// Every client holds a descriptor: lift the soft limit (often 1024) to cover max_clients.
    private func raiseDescriptorLimit() {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return }
        let wanted = rlim_t(settings.maxClients + 256)
        guard limit.rlim_cur < wanted else { return }
        limit.rlim_cur = min(wanted, limit.rlim_max)
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }

    private func bindSocket() throws(LookupServerError) {
        if let adopted = settings.adoptedListener {
            // Connections that arrived while nobody listened wait in its backlog.
            _ = fcntl(adopted, F_SETFL, fcntl(adopted, F_GETFL) | O_NONBLOCK)
            _ = fcntl(adopted, F_SETFD, FD_CLOEXEC)
            listenFD = adopted
            logger.info("lookup socket \(settings.path): adopted the listening socket from the descriptor store")
            try setOwnership()
            return
        }
        let directory = String(settings.path[..<(settings.path.lastIndex(of: "/") ?? settings.path.startIndex)])
        if !directory.isEmpty { mkdir(directory, 0o755) }
        listenFD = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard listenFD >= 0 else { throw .system("socket", errno) }
        // A socket file left by a previous run that nobody listens on any more is ours to replace.
        unlink(settings.path)
        let bound = UnixSocketAddress.withAddress(path: settings.path) { address, length in
            bind(listenFD, address, length)
        }
        guard let bound else { throw .system("bind \(settings.path)", ENAMETOOLONG) }
        guard bound == 0 else { throw .system("bind \(settings.path)", errno) }
        try setOwnership()
        guard listen(listenFD, 512) == 0 else { throw .system("listen", errno) }
    }

    private func setOwnership() throws(LookupServerError) {
        if let group = settings.group, chown(settings.path, uid_t.max, group) != 0 {
            throw .system("chown \(settings.path)", errno)
        }
        guard chmod(settings.path, settings.mode) == 0 else { throw .system("chmod \(settings.path)", errno) }
    }

    private static let readable = UInt32(NFQR_EPOLLIN)
    private static let clientEvents = UInt32(NFQR_EPOLLIN | NFQR_EPOLLRDHUP)

    private func watch(_ fd: Int32, events: UInt32) {
        nfqr_epoll_control(epollFD, fd, Int64(events))
    }

    private func rewatch(_ connection: LookupConnection) {
        // After the client's end-of-file only writability matters (HUP and ERR always come).
        let reading = connection.closeAfterFlush ? 0 : Self.clientEvents
        let events = reading | (connection.hasPendingOutput ? UInt32(NFQR_EPOLLOUT) : 0)
        // Most requests are answered in full at once: no system call when nothing changed.
        guard events != connection.watchedEvents else { return }
        connection.watchedEvents = events
        nfqr_epoll_control(epollFD, connection.fd, Int64(events))
    }

    private func serve() {
        var readyFDs = [Int32](repeating: 0, count: 64)
        var readyEvents = [UInt32](repeating: 0, count: 64)
        var lastSweep = monotonicSeconds()
        var lastDrain = monotonicMilliseconds()
        var lastReady = ContinuousClock.now
        let wakeFD = wakeUp?.descriptor ?? -1
        while true {
            // Busy polling: no sleep until `busyPoll` has passed without anything ready.
            let polling = settings.busyPoll > .zero && ContinuousClock.now - lastReady < settings.busyPoll
            // Events are drained from the table every 100 ms while someone follows them.
            let timeout: Int32 = polling ? 0 : subscriberCount > 0 ? 100 : 1000
            let ready: Int32
            do {
                switch try syscall("epoll_wait", { nfqr_epoll_wait(epollFD, &readyFDs, &readyEvents, 64, timeout) }) {
                case .completed(let count): ready = count
                case .wouldBlock, .noBufferSpace: ready = 0
                }
            } catch {
                logger.error("lookup: \(error)")
                return
            }
            if ready > 0 {
                lastReady = ContinuousClock.now
            } else if polling {
                sched_yield()  // let any runnable thread have this CPU, then ask again
            }
            now = monotonicSeconds()
            for index in 0..<Int(ready) {
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
            if now != lastSweep {
                lastSweep = now
                closeIdle(now: now)
            }
        }
    }

    private func acceptClients() {
        while true {
            let fd: Int32
            do {
                switch try syscall("accept4", { nfqr_accept_nonblocking(listenFD) }) {
                case .completed(let accepted): fd = accepted
                case .wouldBlock: return
                case .noBufferSpace:
                    counters.acceptErrors.add(1)
                    return
                }
            } catch {
                counters.acceptErrors.add(1)
                // Out of descriptors the pending connection would keep the listening socket
                // readable and this loop spinning: spend the reserve to accept and refuse it.
                guard error.errno == .processDescriptorLimit || error.errno == .systemDescriptorLimit, reserveFD >= 0 else { return }
                close(reserveFD)
                let pending = nfqr_accept_nonblocking(listenFD)
                if pending >= 0 { refuse(pending) }
                reserveFD = open("/dev/null", O_RDONLY | O_CLOEXEC)
                if pending < 0 { return }
                continue
            }
            guard connections.count < settings.maxClients else {
                refuse(fd)
                continue
            }
            let peer = PeerCredentials.of(socket: fd)
            let allowed = peer.map(settings.access.allows) ?? false
            if !allowed { counters.deniedPeers.add(1) }
            let connection = LookupConnection(fd: fd, peer: peer, allowed: allowed, now: now, watchedEvents: Self.clientEvents)
            connections[fd] = connection
            counters.clients.add(1)
            watch(fd, events: Self.clientEvents)
        }
    }

    /// Tells a client beyond max_clients why, then closes it.
    private func refuse(_ fd: Int32) {
        counters.rejectedTooMany.add(1)
        _ = Self.busyLine.withCString { send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
        close(fd)
    }

    private func service(_ connection: LookupConnection, events: UInt32) {
        if events & UInt32(NFQR_EPOLLIN | NFQR_EPOLLRDHUP | NFQR_EPOLLHUP | NFQR_EPOLLERR) != 0 && !connection.closeAfterFlush {
            switch readAvailable(connection) {
            case .open: break
            case .endOfFile: connection.closeAfterFlush = true  // answer what was asked, then close
            case .drop:
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

    private enum ReadOutcome { case open, endOfFile, drop }

    /// Reads what is there (with any passed descriptors) and answers every complete line.
    private func readAvailable(_ connection: LookupConnection) -> ReadOutcome {
        while true {
            let outcome = try? syscall("recvmsg") {
                UnixSocketAddress.receive(connection.fd, into: receiveBuffer, control: controlBuffer) { descriptor in
                    if connection.passedDescriptors.count < 16 {
                        connection.passedDescriptors.append(descriptor)
                    } else {
                        close(descriptor)
                    }
                }
            }
            let count: Int
            switch outcome {
            case .completed(let received): count = received
            case .wouldBlock: return .open
            case .noBufferSpace, nil: return .drop
            }
            if count == 0 { return .endOfFile }
            connection.lastActivity = now
            consume(UnsafeRawBufferPointer(rebasing: receiveBuffer[0..<count]), from: connection)
            if connection.output.count - connection.outputOffset > LookupConnection.outputLimit {
                counters.droppedSlowClients.add(1)
                return .drop
            }
            // A short read drained the socket: skip the recvmsg that would only say EAGAIN.
            if count < receiveBuffer.count { return .open }
        }
    }

    /// Answers every complete line in `bytes`; keeps a partial last line for the next read.
    /// Lines that arrived whole are parsed where they lie, without copying.
    private func consume(_ bytes: UnsafeRawBufferPointer, from connection: LookupConnection) {
        var start = 0
        while let newline = bytes[start...].firstIndex(of: UInt8(ascii: "\n")) {
            defer { start = newline + 1 }
            if connection.discardingLine {
                connection.discardingLine = false
                continue
            }
            if connection.input.isEmpty {
                handle(line: UnsafeRawBufferPointer(rebasing: bytes[start..<newline]), from: connection)
            } else {
                connection.input.append(contentsOf: bytes[start..<newline])
                let line = connection.input
                line.withUnsafeBytes { handle(line: $0, from: connection) }
                connection.input.removeAll(keepingCapacity: true)
            }
        }
        guard !connection.discardingLine else { return }
        connection.input.append(contentsOf: bytes[start...])
        if connection.input.count > LookupRequest.maximumLineLength {
            counters.badRequests.add(1)
            connection.queue(.badRequest(LookupRequestError.lineTooLong.description))
            connection.input.removeAll(keepingCapacity: true)
            connection.discardingLine = true
        }
    }

    private func handle(line: UnsafeRawBufferPointer, from connection: LookupConnection) {
        counters.requests.add(1)
        guard connection.allowed else {
            connection.queue(.denied)
            return
        }
        let request: LookupRequest
        do {
            request = try LookupRequest(utf8: line)
        } catch {
            counters.badRequests.add(1)
            connection.queue(.badRequest(error.description))
            return
        }
        switch request {
        case .lookup(let proto, let client, let local):
            answer(backend.lookup(proto: proto, client: client, local: local), to: connection)
        case .lookupDescriptor:
            guard !connection.passedDescriptors.isEmpty else {
                counters.badRequests.add(1)
                connection.queue(.badRequest("LOOKUPFD needs the socket attached as SCM_RIGHTS"))
                return
            }
            let descriptor = connection.passedDescriptors.removeFirst()
            defer { close(descriptor) }
            switch SocketTuple.of(descriptor) {
            case .success(let tuple):
                answer(backend.lookup(proto: tuple.proto, client: tuple.peer, local: tuple.local), to: connection)
            case .failure(let why):
                counters.badRequests.add(1)
                connection.queue(.badRequest(why.description))
            }
        case .list(let format):
            let lines = backend.flowLines(format)
            connection.pendingLines = ArraySlice(lines + ["END \(lines.count)"])
            connection.refillFromPendingLines()
        case .stats(let format):
            for line in backend.statisticsLines(format) { connection.queue(line + "\n") }
            connection.queue("END\n")
        case .events(let format):
            if connection.subscribedEvents == nil { subscriberCount += 1 }
            connection.subscribedEvents = format
            connection.queue("OK subscribed\n")
        case .version:
            connection.queue("OK \(backend.versionLine)\n")
        }
    }

    private func answer(_ answer: LookupAnswer, to connection: LookupConnection) {
        counters.count(answer)
        connection.queue(answer)
    }

    private func deliver(_ events: [FlowEvent]) {
        guard !events.isEmpty, subscriberCount > 0 else { return }
        let collected = WallClock.Reading.now()
        let timestamps = events.map { WallClock.estimate(monotonicSecond: $0.time, collectedAt: collected) }
        for connection in connections.values {
            guard let format = connection.subscribedEvents else { continue }
            for (event, timestamp) in zip(events, timestamps) {
                connection.queue(FlowFormatting.line(for: event, timestamp: timestamp, format: format) + "\n")
            }
            if connection.output.count - connection.outputOffset > LookupConnection.outputLimit {
                counters.droppedSlowClients.add(1)
                disconnect(connection)
                continue
            }
            if !flush(connection) {
                disconnect(connection)
                continue
            }
            rewatch(connection)
        }
    }

    /// Writes what the socket takes now. Returns false when the client is gone.
    private func flush(_ connection: LookupConnection) -> Bool {
        while connection.hasPendingOutput {
            connection.refillFromPendingLines()
            let outcome = try? syscall("send") {
                connection.output[connection.outputOffset...].withUnsafeBytes { bytes in
                    send(connection.fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL))
                }
            }
            let written: Int
            switch outcome {
            case .completed(let sent): written = sent
            case .wouldBlock: return true
            case .noBufferSpace, nil: return false
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
        if connection.subscribedEvents != nil { subscriberCount -= 1 }
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
