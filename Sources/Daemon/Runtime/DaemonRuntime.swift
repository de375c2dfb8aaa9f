import Glibc
import Kernel
import Logging
import RedirectCore

/// The running daemon: the flow table, the queues and their threads, the rules in the
/// kernel, the lookup service. `start()` brings them up in the order that never drops a
/// packet it need not (queues are bound before the rules that feed them are installed), and
/// undoes what it did if a later step fails; `stop()` takes them down in the reverse order.
final class DaemonRuntime: @unchecked Sendable {
    private(set) var configuration: DaemonConfiguration
    let logger: Logger
    let table: FlowTable
    let rules: SnapshotBox<DatapathRules>
    let clock: @Sendable () -> UInt32 = { UInt32(truncatingIfNeeded: monotonicSeconds()) }
    private let installer: any RuleInstaller
    private let addressSource: any InterfaceAddressSource
    private let queueFactory: (NetfilterQueueConfiguration) throws(KernelError) -> any PacketQueue
    private let conntrackFactory: (ConntrackEventsConfiguration) throws(KernelError) -> any ConntrackEventSource
    /// Kernel-nat mode: the thread that keeps the table current from conntrack's events.
    private(set) var conntrackSync: ConntrackSync?
    private var conntrackThread: pthread_t?
    private let bootID = Preflight.bootID()
    private(set) var workers: [DatapathWorker] = []
    private var workerThreads: [pthread_t] = []
    private var addressMonitor: (any InterfaceAddressMonitor)?
    private var addressThread: pthread_t?
    private(set) var lookupServer: LookupServer?
    let addressChanges = AtomicCounter()
    let restoredFlows = AtomicCounter()
    /// Times the once-a-second check found rules missing and put them back.
    let rulesRestored = AtomicCounter()
    /// 1 while the last check found rules missing that are still missing (not managed, or
    /// the repair failed).
    let rulesMissing = AtomicGauge()
    /// SIGHUP reloads applied and refused (the running configuration kept).
    let reloadsApplied = AtomicCounter()
    let reloadsRefused = AtomicCounter()
    private let rulesLog: RateLimitedLog
    let lookupLatency = LatencyHistogram()
    /// Rules a reload took away that established flows still use: the kernel keeps queueing
    /// their packets (the datapath's policy no longer creates flows for them) until the last
    /// such flow ends. The lock also serialises every rule change (reload, housekeeping).
    private let retiredRules = Locked<[RedirectRule]>([])
    /// The kernel's own getsockopt(SO_ORIGINAL_DST) answers: the table tells the publisher of
    /// every redirected flow; the hook, when the host allows it, holds what it publishes.
    let nativeAnswers = NativeAnswerPublisher()
    private(set) var getsockoptHook: GetsockoptHookStatus = .off
    private var hook: BPFGetsockoptHook?
    private var sweeps = 0
    /// Flows read from the previous process's live table, restored by `start()`.
    private var liveTableRecords: SharedFlowFile.AdoptedTable?
    /// The service manager's descriptor store: queue sockets and the lookup listener kept
    /// across a crash or restart (nil: bind afresh every start).
    let descriptorStore: FileDescriptorStore?

    init(
        configuration: DaemonConfiguration, logger: Logger,
        installer: any RuleInstaller = IptablesRuleInstaller(), descriptorStore: FileDescriptorStore? = nil,
        addressSource: any InterfaceAddressSource = RtnetlinkAddressSource(),
        queueFactory: @escaping (NetfilterQueueConfiguration) throws(KernelError) -> any PacketQueue = { configuration throws(KernelError) in
            try NetfilterQueue(configuration: configuration)
        },
        conntrackFactory: @escaping (ConntrackEventsConfiguration) throws(KernelError) -> any ConntrackEventSource = {
            configuration throws(KernelError) in
            try NetlinkConntrackEvents(configuration: configuration)
        }
    ) throws(StartupError) {
        self.conntrackFactory = conntrackFactory
        self.configuration = configuration
        self.logger = logger
        self.rulesLog = RateLimitedLog(logger: logger, interval: 60)
        self.installer = installer
        self.addressSource = addressSource
        self.queueFactory = queueFactory
        self.descriptorStore = descriptorStore
        // Events (new / destroyed flows) feed the lookup service's EVENTS stream, which
        // drains them every 100 ms; 16384 undrained ones cover a burst of 160k flows/s.
        let tableConfiguration = FlowTableConfiguration(
            limit: configuration.tableLimit, timeouts: configuration.timeouts, eventCapacity: 16384)
        do {
            try tableConfiguration.validate()
        } catch {
            throw StartupError("table: \(error)")
        }
        var sharedFile: SharedFlowFile?
        if let path = configuration.liveTablePath {
            (sharedFile, liveTableRecords) = Self.openLiveTable(
                path: path, tableConfiguration: tableConfiguration, bootID: bootID, logger: logger)
        }
        do {
            table = try FlowTable(configuration: tableConfiguration, observer: nativeAnswers, sharedFile: sharedFile)
        } catch {
            throw StartupError("table: \(error)")
        }
        rules = SnapshotBox(
            DatapathRules(policy: RedirectPolicy(rules: configuration.redirects), addresses: .empty, kernelNAT: configuration.kernelNATMarks))
    }

    var ruleSet: RuleSetConfiguration { configuration.ruleSet }

    /// `[rules] manage`: false when the operator loads the rules; the daemon then never
    /// installs, replaces or removes them.
    private var managesRules: Bool { configuration.ruleManagement.manage }

    /// Checks what can be checked without changing the host.
    func preflight() throws(StartupError) {
        do {
            try installer.checkAvailable(for: ruleSet)
            try ruleSet.validate()
        } catch {
            throw StartupError("\(error)")
        }
    }

    func start() throws(StartupError) {
        // The hook first, so that restored flows are published as the table takes them.
        startGetsockoptHook()
        restoreState()
        reconcileNativeAnswers()
        do {
            let monitor = try addressSource.makeMonitor()
            if let first = try monitor.nextSnapshot() { applyAddresses(first) }
            addressMonitor = monitor
        } catch {
            throw StartupError("interface addresses: \(error)")
        }
        do {
            try bindQueues()
        } catch {
            stopWorkers()
            stopGetsockoptHook(keep: false)
            throw error
        }
        do {
            // Subscribed before the rules exist, so no event of a flow handed over is missed.
            try startConntrackSync()
        } catch {
            stopWorkers()
            stopGetsockoptHook(keep: false)
            throw error
        }
        do {
            // Not managed: the operator loads them; the first check, a second from now, warns.
            if managesRules { try installer.install(ruleSet) }
        } catch {
            stopWorkers()
            stopGetsockoptHook(keep: false)
            throw StartupError("installing rules: \(error)")
        }
        startAddressThread()
        do {
            try startLookup()
        } catch {
            removeRules()
            stopWorkers()
            stopGetsockoptHook(keep: false)
            throw error
        }
    }

    // MARK: Native getsockopt answers

    private func startGetsockoptHook() {
        let settings = configuration.getsockopt
        if configuration.datapath.mode == .kernelNAT {
            // The kernel's NAT holds every flow: its own getsockopt(SO_ORIGINAL_DST) answers.
            getsockoptHook = .off
            logger.info("getsockopt hook not needed in kernel-nat mode: the kernel's conntrack answers SO_ORIGINAL_DST itself")
            return
        }
        guard settings.enabled else {
            getsockoptHook = .off
            logger.info("getsockopt hook off (getsockopt.hook = false): proxies get answers from the lookup socket or the preload library")
            return
        }
        guard BPFGetsockoptHook.isBuiltIn else {
            getsockoptHook = .unavailable("this build carries no BPF program")
            logger.warning(
                "getsockopt hook unavailable: this binary was built without the BPF program (build with make); proxies get answers from the lookup socket or the preload library"
            )
            return
        }
        if let orphans = try? BPFGetsockoptHook.removeOrphans(cgroupPath: settings.cgroup), orphans > 0 {
            logger.info("getsockopt hook: detached \(orphans) program\(orphans == 1 ? "" : "s") whose network namespace is gone")
        }
        do {
            let started = try BPFGetsockoptHook.start(cgroupPath: settings.cgroup, capacity: configuration.tableLimit)
            hook = started
            nativeAnswers.publish(into: started)
            getsockoptHook = .on(cgroup: started.cgroup)
            logger.info(
                "getsockopt hook \(started.adopted ? "adopted from the previous run" : "attached") on \(started.cgroup) (BPF program id \(started.programID)): the kernel answers SO_ORIGINAL_DST for redirected flows"
            )
        } catch {
            getsockoptHook = .unavailable("\(error)")
            logger.warning("getsockopt hook unavailable: \(error); proxies get answers from the lookup socket or the preload library")
        }
    }

    private func reconcileNativeAnswers() {
        guard hook != nil else { return }
        let stale = nativeAnswers.reconcile(with: table.records(now: clock()))
        if stale > 0 { logger.info("getsockopt hook: removed \(stale) answers of flows that ended while no daemon ran") }
    }

    /// `keep`: leave the program attached with its answers for the next run (a restart).
    private func stopGetsockoptHook(keep: Bool) {
        guard let hook else { return }
        nativeAnswers.publish(into: nil)
        self.hook = nil
        if keep {
            hook.release()
        } else {
            do {
                try hook.detach()
            } catch {
                logger.error("detaching the getsockopt hook failed: \(error); remove it with `nfq-redirect rules --remove`")
            }
        }
    }

    private func bindQueues() throws(StartupError) {
        let queues = configuration.queues
        // Kernel-nat mode queues first packets only: no reply queues.
        let replies = configuration.datapath.mode == .kernelNAT ? [] : queues.replyQueues.map { ($0, PacketMetadata.Direction.reply) }
        let plan: [(UInt16, PacketMetadata.Direction)] = queues.originalQueues.map { ($0, .original) } + replies
        descriptorStore?.prepare(wantedQueues: Set(plan.map(\.0)))
        for (number, direction) in plan {
            var queueConfiguration = NetfilterQueueConfiguration(queueNumber: number)
            queueConfiguration.maximumQueueLength = queues.maxLength
            queueConfiguration.receiveBufferBytes = queues.receiveBufferBytes
            queueConfiguration.failOpen = queues.failOpen
            queueConfiguration.segmentationOffload = queues.gso
            queueConfiguration.polling = queues.polling
            let queue: any PacketQueue
            do {
                queue = try descriptorStore?.adoptQueue(queueConfiguration, logger: logger) ?? queueFactory(queueConfiguration)
            } catch {
                throw StartupError("binding NFQUEUE \(number): \(error)")
            }
            let worker = DatapathWorker(
                queue: queue, direction: direction, table: table, rules: rules, clock: clock, logger: logger,
                nativeAnswers: nativeAnswers)
            workers.append(worker)
            workerThreads.append(startThread(name: "nfqr-q\(number)") { worker.run() })
        }
    }

    /// Kernel-nat mode: subscribes to conntrack's events of the daemon's entries (any bit of
    /// the mark mask set) and starts the thread that applies them.
    private func startConntrackSync() throws(StartupError) {
        guard configuration.datapath.mode == .kernelNAT else { return }
        let source: any ConntrackEventSource
        do {
            source = try conntrackFactory(
                ConntrackEventsConfiguration(markValue: 0, markMask: configuration.datapath.markMask, negated: true))
        } catch {
            throw StartupError("conntrack events (kernel-nat mode needs ctnetlink): \(error)")
        }
        let sync = ConntrackSync(
            source: source, table: table, rules: rules, resyncSeconds: configuration.datapath.resyncSeconds, clock: clock,
            logger: logger)
        conntrackSync = sync
        conntrackThread = startThread(name: "nfqr-conntrack") { sync.run() }
    }

    /// The queues the datapath threads read (their sockets go to the descriptor store).
    var queues: [any PacketQueue] { workers.map(\.queue) }

    private func startLookup() throws(StartupError) {
        let (access, group) = try Preflight.resolveAccess(configuration.lookup)
        let settings = LookupServer.Settings(
            path: configuration.lookup.socketPath, mode: mode_t(configuration.lookup.socketMode), group: group,
            access: access, maxClients: configuration.lookup.maxClients,
            idleTimeoutSeconds: configuration.lookup.idleTimeoutSeconds,
            busyPoll: .microseconds(configuration.lookup.busyPollMicroseconds),
            adoptedListener: descriptorStore?.takeListener(path: configuration.lookup.socketPath))
        let backend = DaemonBackend(table: table, clock: clock, latency: lookupLatency, conntrack: conntrackSync) { [unowned self] in statistics() }
        let server = LookupServer(settings: settings, backend: backend, logger: logger)
        do {
            try server.start()
        } catch {
            throw StartupError("lookup socket: \(error)")
        }
        lookupServer = server
    }

    private func startAddressThread() {
        guard let monitor = addressMonitor else { return }
        addressThread = startThread(name: "nfqr-addrs") { [self] in
            do {
                try monitor.run { applyAddresses($0) }
            } catch {
                logger.error("interface address monitor stopped: \(error); redirect addresses are frozen")
            }
        }
    }

    private func applyAddresses(_ addresses: [InterfaceAddress]) {
        let book = RedirectAddressBook(addresses)
        rules.update { $0.replacingAddresses(book) }
        addressChanges.add(1)
        logger.debug("interface addresses: \(addresses.count) known")
    }

    // MARK: Reload

    /// Applies a new configuration: new rules for new flows, established flows keep their
    /// mapping. What only a restart can change is refused with the reason.
    func reload(_ new: DaemonConfiguration) throws(StartupError) {
        var needsRestart: [String] = []
        if new.ruleManagement.manage != configuration.ruleManagement.manage { needsRestart.append("rules.manage") }
        if new.queues != configuration.queues { needsRestart.append("queue settings") }
        if new.lookup != configuration.lookup { needsRestart.append("lookup socket settings") }
        if new.tableLimit != configuration.tableLimit { needsRestart.append("table.limit") }
        if new.timeouts != configuration.timeouts { needsRestart.append("timeouts") }
        if new.liveTablePath != configuration.liveTablePath { needsRestart.append("state.table") }
        if new.metrics != configuration.metrics { needsRestart.append("metrics listener") }
        if new.getsockopt != configuration.getsockopt { needsRestart.append("getsockopt hook settings") }
        if new.datapath != configuration.datapath { needsRestart.append("datapath settings") }
        guard needsRestart.isEmpty else {
            throw StartupError("\(needsRestart.joined(separator: ", ")) changed: these need a restart, not a reload")
        }
        try retiredRules.withLock { (retired: inout [RedirectRule]) throws(StartupError) in
            // Established flows keep their mapping: rules they came by stay queued, retired.
            let stillRetired = (configuration.redirects + retired).filter { !new.redirects.contains($0) }
            do {
                try new.ruleSet.validate()
                if managesRules { try installer.install(Self.kernelRuleSet(new, retired: stillRetired)) }
            } catch {
                throw StartupError("installing the new rules: \(error)")
            }
            rules.update { $0.replacingPolicy(RedirectPolicy(rules: new.redirects), kernelNAT: new.kernelNATMarks) }
            configuration = new
            retired = stillRetired
        }
    }

    /// What the kernel queues: the configured rules, and retired ones for their last flows.
    private static func kernelRuleSet(_ configuration: DaemonConfiguration, retired: [RedirectRule]) -> RuleSetConfiguration {
        var ruleSet = configuration.ruleSet
        // Kernel-nat mode: established flows are the kernel's NAT's; nothing of theirs is queued.
        guard configuration.datapath.mode == .userspace else { return ruleSet }
        ruleSet.rules += retired.filter { !ruleSet.rules.contains($0) }
        return ruleSet
    }

    /// Stops queueing for retired rules once no tracked flow uses them any more.
    private func dropUnusedRetiredRules() {
        retiredRules.withLock { retired in
            guard !retired.isEmpty, managesRules else { return }
            let flows = table.records(now: clock())
            let used = retired.filter { rule in flows.contains { rule.carries($0) } }
            guard used.count < retired.count else { return }
            do {
                try installer.install(Self.kernelRuleSet(configuration, retired: used))
                logger.info(
                    "no flow uses \(retired.filter { !used.contains($0) }.map(\.description).joined(separator: " ")) any more: its packets are no longer queued"
                )
                retired = used
            } catch {
                logger.error("removing retired rules failed: \(error); trying again later")
            }
        }
    }

    // MARK: Stop

    /// Stops everything. With `keepRules` (a restart) the kernel keeps queueing to us and the
    /// flow table is saved, so the next daemon, started within moments, picks up where this
    /// one left off. Without (a stop for good) the rules go first, so no packet waits for a
    /// queue nobody reads, and no saved table outlives the flows it describes.
    func stop(keepRules: Bool) {
        if !keepRules { removeRules() }
        stopWorkers()
        addressMonitor?.stop()
        if let addressThread { pthread_join(addressThread, nil) }
        addressThread = nil
        if keepRules {
            saveState()
        } else {
            if let path = configuration.stateFile { StateFile(path: path).remove() }
            table.sharedFile?.removeFile()
        }
        // After the workers: no flow changes any more. Kept for a restart, like the rules.
        stopGetsockoptHook(keep: keepRules)
        // A stored listener stays where proxies find it, for the next start to adopt.
        lookupServer?.stop(removeSocketFile: !(keepRules && descriptorStore?.isActive == true))
        lookupServer = nil
    }

    private func removeRules() {
        guard managesRules else { return }
        do {
            try installer.remove()
        } catch {
            logger.error("removing rules failed: \(error); remove them with `nfq-redirect rules --remove`")
        }
    }

    private func stopWorkers() {
        for worker in workers { worker.stop() }
        for thread in workerThreads { pthread_join(thread, nil) }
        workers.removeAll()
        workerThreads.removeAll()
        conntrackSync?.stop()
        if let conntrackThread { pthread_join(conntrackThread, nil) }
        conntrackThread = nil
    }

    // MARK: Housekeeping

    /// Expires flows a slice at a time; called about once a second.
    func sweep() {
        _ = table.sweep(now: clock(), budget: max(4096, configuration.tableLimit / 64))
        sweeps += 1
        if sweeps % 10 == 0 { dropUnusedRetiredRules() }
    }

    /// Once a second: are the daemon's chains and jumps still in the kernel? A firewall reload
    /// (`iptables -t raw -F`, `nft flush ruleset`, a restore of a saved ruleset) takes them
    /// away and with them every redirect. Managed, they are put back at once, counted and
    /// logged once per event; not managed, a warning (at most once a minute) says they are
    /// missing. Under the lock every rule change takes, so it never races a reload.
    func checkRules() {
        retiredRules.withLock { retired in
            let wanted = Self.kernelRuleSet(configuration, retired: retired)
            let missing: [String]
            do {
                missing = try installer.missing(wanted, orNftTable: !managesRules)
            } catch {
                rulesLog.warning("checking the firewall rules failed: \(error)")
                return
            }
            guard !missing.isEmpty else {
                rulesMissing.set(0)
                return
            }
            let what =
                missing.count <= 3 ? missing.joined(separator: ", ") : "\(missing.prefix(2).joined(separator: ", ")) and \(missing.count - 2) more"
            guard managesRules else {
                rulesMissing.set(1)
                rulesLog.warning(
                    "firewall rules missing (\(what)) and [rules] manage = false: nothing is redirected until you load them (`nfq-redirect rules` prints them)"
                )
                return
            }
            do {
                try installer.install(wanted)
                rulesRestored.add(1)
                rulesMissing.set(0)
                logger.warning("firewall rules restored: \(what) had been removed (a firewall reload?)")
            } catch {
                rulesMissing.set(1)
                rulesLog.warning("firewall rules missing (\(what)) and putting them back failed: \(error); trying again every second")
            }
        }
    }

    /// Progress of every datapath thread, to tell a hung one from an idle one.
    var workerProgress: [UInt64] { workers.map(\.progress.load) }

    // MARK: State

    /// Reads the previous process's live table at `path` (if any) and makes the new one beside it
    /// (`path.new`, renamed over `path` once the flows are in: see `adoptLiveTable`). A table
    /// that cannot be trusted is set aside as `path.corrupt`; a directory others may write to,
    /// a file another live daemon holds, or a file that cannot be made, leaves the table in
    /// private memory (one warning).
    private static func openLiveTable(
        path: String, tableConfiguration: FlowTableConfiguration, bootID: UInt128, logger: Logger
    ) -> (SharedFlowFile?, SharedFlowFile.AdoptedTable?) {
        let directory = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? "."
        if !directory.isEmpty { mkdir(directory, 0o700) }
        var info = stat()
        guard lstat(directory.isEmpty ? "/" : directory, &info) == 0, info.st_mode & S_IFMT == S_IFDIR,
            info.st_uid == geteuid(), info.st_mode & 0o022 == 0
        else {
            logger.warning(
                "live table off: \(directory) is not a directory of uid \(geteuid()) closed to others' writes; a crash loses the flow table")
            return (nil, nil)
        }
        var adopted: SharedFlowFile.AdoptedTable?
        do {
            adopted = try SharedFlowFile.adopt(path: path, bootID: bootID)
        } catch .missing {
        } catch .inUse {
            // Another daemon (another network namespace, same directory) lives on that file:
            // never touch it. This one runs without a live table.
            logger.warning(
                "live table off: \(path) is held by another running nfq-redirectd (give each daemon its own --table-file or runtime directory); a crash loses the flow table"
            )
            return (nil, nil)
        } catch {
            let aside = path + ".corrupt"
            rename(path, aside)
            logger.warning("live table at \(path) not used (\(error)); moved to \(aside)")
        }
        do {
            let file = try SharedFlowFile.create(path: path + ".new", configuration: tableConfiguration, bootID: bootID)
            return (file, adopted)
        } catch {
            logger.warning("live table off: \(error); a crash loses the flow table")
            return (nil, adopted)
        }
    }

    /// Takes in the flows of the previous process's live table (after the state file's, which
    /// a planned restart wrote and which wins where both hold a tuple), then gives the new
    /// table the canonical name: until this rename a crash leaves the old table in place.
    private func adoptLiveTable() {
        if let adopted = liveTableRecords, let path = configuration.liveTablePath {
            let restored = table.restore(adopted.records, now: clock())
            restoredFlows.add(UInt64(restored))
            var notes: [String] = []
            if adopted.dirtySlots > 0 { notes.append("\(adopted.dirtySlots) being written when it stopped, taken from their undo copies") }
            if restored < adopted.records.count { notes.append("the others were restored from the state file, expired or clashed") }
            let note = notes.isEmpty ? "" : " (\(notes.joined(separator: "; ")))"
            logger.info("adopted \(restored) of \(adopted.records.count) flows from the live table \(path)\(note)")
        }
        liveTableRecords = nil
        if let file = table.sharedFile, let path = configuration.liveTablePath, file.path != path {
            do {
                try file.rename(to: path)
            } catch {
                logger.error("live table: \(error)")
            }
        }
    }

    private func restoreState() {
        defer { adoptLiveTable() }
        guard let path = configuration.stateFile else { return }
        let file = StateFile(path: path)
        let bytes: [UInt8]
        do {
            bytes = try file.read(limit: 64 + configuration.tableLimit * 128)
        } catch .missing {
            logger.info("no saved flow table at \(path): starting empty")
            return
        } catch {
            let aside = file.quarantine()
            logger.warning("saved flow table unreadable (\(error)); moved to \(aside), starting empty")
            return
        }
        do {
            let records = try FlowSnapshot.decode(bytes, now: clock(), clockDomain: bootID)
            let restored = table.restore(records, now: clock())
            restoredFlows.add(UInt64(restored))
            logger.info("restored \(restored) of \(records.count) saved flows from \(path)")
            file.remove()
        } catch {
            let aside = file.quarantine()
            logger.warning("saved flow table at \(path) not used (\(error)); moved to \(aside), starting empty")
        }
    }

    private func saveState() {
        guard let path = configuration.stateFile else { return }
        let records = table.records(now: clock())
        do {
            try StateFile(path: path).write(FlowSnapshot.encode(records, savedAt: clock(), clockDomain: bootID))
            logger.info("saved \(records.count) flows to \(path)")
        } catch {
            logger.error("saving the flow table failed: \(error)")
        }
    }
}

extension DaemonConfiguration {
    /// What the rule installer needs from the configuration.
    public var ruleSet: RuleSetConfiguration {
        RuleSetConfiguration(
            rules: redirects, firstQueue: queues.first, queueCount: queues.count, failOpen: queues.failOpen,
            excludedMarks: exclusions.marks, excludedUserIDs: exclusions.uids, kernelNAT: kernelNATMarks)
    }

    /// Kernel-nat mode's marks for the configured redirects; nil in the userspace mode (and
    /// when the mask cannot hold the ports, which validation refuses).
    public var kernelNATMarks: KernelNATMarks? {
        guard datapath.mode == .kernelNAT else { return nil }
        return KernelNATMarks(mask: datapath.markMask, ports: redirects.map(\.toPort))
    }
}
