import Glibc
import Kernel
import Logging

/// The service manager's file descriptor store (systemd's `FileDescriptorStoreMax=`), without
/// libsystemd: the NFQUEUE sockets and the lookup listener outlive the process, so a crash, a
/// watchdog kill or a restart costs the packets a wait in the kernel's queue, not a drop.
///
/// - At start, descriptors the manager passes (`LISTEN_FDS`, `LISTEN_FDNAMES`, `LISTEN_PID`,
///   sd_listen_fds(3)) are read, the variables unset, the descriptors made close-on-exec.
/// - `takeQueue` / `takeListener` hand one over once it passes its checks; one that fails is
///   closed with one log line and removed from the store, and the normal path runs.
/// - After start, `keep` sends each open socket with `FDSTORE=1` + `FDNAME=`, and
///   `discardUnclaimed` closes and removes (`FDSTOREREMOVE=1`) those no longer wanted.
/// - On a stop for good, `empty` removes them all, so the queues unbind.
final class FileDescriptorStore: @unchecked Sendable {
    /// Names in the store: one per queue, and the lookup listener.
    static func queueName(_ queue: UInt16) -> String { "nfqueue-\(queue)" }
    static let listenerName = "lookup"

    /// The queue number a stored name stands for, or nil.
    static func queueNumber(in name: String) -> UInt16? {
        guard name.hasPrefix("nfqueue-") else { return nil }
        let digits = name.dropFirst("nfqueue-".count)
        guard !digits.isEmpty, digits.allSatisfy(\.isNumber), let number = UInt16(digits), String(number) == digits else { return nil }
        return number
    }

    struct Entry: Equatable, Sendable {
        var name: String
        var descriptor: Int32
    }

    /// sd_listen_fds(3) on the environment: the passed descriptors (3, 4, ...) with their names,
    /// or why none are taken (`LISTEN_PID` not this process, a malformed count).
    static func parse(environment: [String: String], pid: Int32) -> (entries: [Entry], ignored: String?) {
        guard let countText = environment["LISTEN_FDS"] else { return ([], nil) }
        guard let pidText = environment["LISTEN_PID"], let listenPID = Int32(pidText) else {
            return ([], "LISTEN_FDS without a LISTEN_PID")
        }
        guard listenPID == pid else { return ([], "LISTEN_PID \(listenPID) is not this process (\(pid))") }
        guard let count = Int(countText), (0...4096).contains(count) else { return ([], "LISTEN_FDS=\(countText) is not a count") }
        let names = environment["LISTEN_FDNAMES"].map { $0.split(separator: ":", omittingEmptySubsequences: false).map(String.init) } ?? []
        let entries = (0..<count).map { index in
            Entry(name: index < names.count && !names[index].isEmpty ? names[index] : "unknown", descriptor: Int32(3 + index))
        }
        return (entries, nil)
    }

    /// What to do with passed descriptors: the first of each wanted name is offered for
    /// adoption; the rest (unknown names, queues no longer configured, duplicates) are dropped.
    static func plan(_ entries: [Entry], wantedQueues: Set<UInt16>) -> (offered: [String: Int32], dropped: [Entry]) {
        var offered: [String: Int32] = [:]
        var dropped: [Entry] = []
        for entry in entries {
            let wanted = entry.name == listenerName || queueNumber(in: entry.name).map(wantedQueues.contains) == true
            if wanted, offered[entry.name] == nil {
                offered[entry.name] = entry.descriptor
            } else {
                dropped.append(entry)
            }
        }
        return (offered, dropped)
    }

    private let notifier: SystemdNotifier
    private let logger: Logger
    private var passed: [Entry]
    private var offered: [String: Int32] = [:]
    private var kept: [String] = []

    /// Reads and unsets `LISTEN_*` (children must not inherit them); marks the descriptors
    /// close-on-exec.
    init(environment: [String: String], notifier: SystemdNotifier, logger: Logger) {
        self.notifier = notifier
        self.logger = logger
        let (entries, ignored) = Self.parse(environment: environment, pid: getpid())
        if let ignored { logger.warning("descriptors from the service manager not used: \(ignored)") }
        for name in ["LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PID"] { unsetenv(name) }
        passed = entries.filter { fcntl($0.descriptor, F_SETFD, FD_CLOEXEC) == 0 }
    }

    /// Whether descriptors go to a service manager (`NOTIFY_SOCKET` set).
    var isActive: Bool { notifier.isActive }

    /// Splits the passed descriptors by the configuration: what is not wanted is closed and
    /// removed from the store now, before any queue is bound.
    func prepare(wantedQueues: Set<UInt16>) {
        let (offered, dropped) = Self.plan(passed, wantedQueues: wantedQueues)
        self.offered = offered
        passed = []
        for entry in dropped {
            close(entry.descriptor)
            let duplicate = offered[entry.name] != nil
            if !duplicate { remove(entry.name) }
            logger.info("stored descriptor \(entry.name) closed: \(duplicate ? "a second one of that name" : "not wanted by this configuration")")
        }
    }

    /// The stored socket of `queue` if it is an NFQUEUE socket; nil otherwise (then closed).
    func takeQueue(_ queue: UInt16) -> Int32? {
        take(Self.queueName(queue)) { $0.notAQueueSocket }
    }

    /// The stored lookup listener if it listens at `path` (and the file is still there).
    func takeListener(path: String) -> Int32? {
        take(Self.listenerName) { socket in
            if let problem = socket.notAListener(at: path) { return problem }
            var info = stat()
            guard stat(path, &info) == 0, info.st_mode & S_IFMT == S_IFSOCK else { return "\(path) is gone" }
            return nil
        }
    }

    private func take(_ name: String, check: (AdoptedSocket) -> String?) -> Int32? {
        guard let descriptor = offered.removeValue(forKey: name) else { return nil }
        let problem = AdoptedSocket.inspect(descriptor).map(check) ?? "not a socket"
        guard let problem else { return descriptor }
        reject(name: name, descriptor: descriptor, reason: problem)
        return nil
    }

    /// A descriptor that failed after `take` (the kernel refused it): closed and removed.
    func reject(name: String, descriptor: Int32, reason: String, alreadyClosed: Bool = false) {
        if !alreadyClosed { close(descriptor) }
        remove(name)
        logger.warning("stored descriptor \(name) not used (\(reason)): closed, starting it afresh")
        if let queue = Self.queueNumber(in: name) { awaitUnbound(queue) }
    }

    /// A refused socket may still hold its queue (bound, but not as its name said) until the
    /// manager has acted on FDSTOREREMOVE: a fresh BIND before that is EBUSY. Waits up to a
    /// second for the kernel to show the queue unbound (another program's binding stays: then
    /// the fresh BIND fails as it would have).
    private func awaitUnbound(_ queue: UInt16) {
        for _ in 0..<100 {
            guard let bound = try? NetfilterQueueKernelStatistics.read(), bound.contains(where: { $0.queueNumber == queue }) else { return }
            usleep(10_000)
        }
    }

    /// After start: offered descriptors nobody took are closed and removed.
    func discardUnclaimed() {
        for (name, descriptor) in offered.sorted(by: { $0.key < $1.key }) {
            close(descriptor)
            remove(name)
            logger.info("stored descriptor \(name) closed: not used by this start")
        }
        offered = [:]
    }

    /// Hands each descriptor to the manager (it keeps a duplicate; one it already holds is
    /// not stored twice). Queue sockets stop reporting ENOBUFS first: systemd drops a stored
    /// descriptor that polls POLLERR, and an overrun while nobody reads would raise it.
    func keep(_ descriptors: [(name: String, descriptor: Int32)]) {
        guard isActive else { return }
        var stored: [String] = []
        for (name, descriptor) in descriptors {
            if Self.queueNumber(in: name) != nil {
                var on: Int32 = 1
                setsockopt(descriptor, 270 /* SOL_NETLINK */, 5 /* NETLINK_NO_ENOBUFS */, &on, socklen_t(MemoryLayout<Int32>.size))
            }
            if notifier.notify("FDSTORE=1\nFDNAME=\(name)", descriptors: [descriptor]) {
                stored.append(name)
            } else {
                logger.warning("could not hand \(name) to the service manager's descriptor store")
            }
        }
        kept = stored
        if !stored.isEmpty { logger.info("descriptor store: \(stored.joined(separator: " ")) kept by the service manager across restarts") }
    }

    /// A stop for good: the manager closes every stored descriptor (the queues unbind).
    func empty() {
        guard isActive else { return }
        for name in kept { remove(name) }
        kept = []
    }

    private func remove(_ name: String) {
        guard isActive else { return }
        notifier.notify("FDSTOREREMOVE=1\nFDNAME=\(name)")
    }
}

extension FileDescriptorStore {
    /// The queue's socket from the store, if it holds one the kernel accepts as bound to it.
    func adoptQueue(_ configuration: NetfilterQueueConfiguration, logger: Logger) -> NetfilterQueue? {
        let number = configuration.queueNumber
        guard let fd = takeQueue(number) else { return nil }
        do {
            let queue = try NetfilterQueue(configuration: configuration, adopting: fd)
            let orphans = queue.orphansReleased ? " (packets the previous process left unanswered sent through the rules again)" : ""
            logger.info("NFQUEUE \(number): adopted the bound socket from the descriptor store\(orphans)")
            return queue
        } catch {
            reject(name: Self.queueName(number), descriptor: fd, reason: "\(error)", alreadyClosed: true)
            return nil
        }
    }
}

extension DaemonRuntime {
    /// What the descriptor store keeps: every queue socket and the lookup listener.
    var storableDescriptors: [(name: String, descriptor: Int32)] {
        var result: [(name: String, descriptor: Int32)] = queues.compactMap { queue in
            guard let queue = queue as? NetfilterQueue else { return nil }
            return (FileDescriptorStore.queueName(queue.queueNumber), queue.descriptor)
        }
        if let listener = lookupServer?.listeningDescriptor { result.append((FileDescriptorStore.listenerName, listener)) }
        return result
    }
}
