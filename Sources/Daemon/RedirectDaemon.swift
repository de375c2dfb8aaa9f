import Dispatch
import Glibc
import Logging
import RedirectCore
import ServiceLifecycle
import UnixSignals

/// The daemon's life: preflight, start, serve until SIGTERM/SIGINT (reloading on SIGHUP),
/// stop. Everything that can fail before the host is changed fails first, with one line.
public enum RedirectDaemon {
    /// Runs the daemon from the process's main thread, which waits while the daemon's async life
    /// runs on the global executor; returns the process exit code. Synchronous on purpose: an
    /// async main runs on a Dispatch thread, not the main thread, so a signal mask set there
    /// (LifecycleSignals) would not reach the main thread and every thread it creates.
    public static func runBlocking(
        configuration: DaemonConfiguration,
        reloadConfiguration: @escaping @Sendable () throws(ConfigurationError) -> DaemonConfiguration
    ) -> Int32 {
        let finished = DispatchSemaphore(value: 0)
        let exitCode = Locked<Int32>(1)
        Task.detached {
            let code = await run(configuration: configuration, reloadConfiguration: reloadConfiguration)
            exitCode.withLock { $0 = code }
            finished.signal()
        }
        finished.wait()
        return exitCode.withLock { $0 }
    }

    /// Runs the daemon; returns the process exit code. `reloadConfiguration` re-reads the
    /// config file and re-applies the command line, for SIGHUP.
    public static func run(
        configuration: DaemonConfiguration,
        reloadConfiguration: @escaping @Sendable () throws(ConfigurationError) -> DaemonConfiguration
    ) async -> Int32 {
        let level = Logger.Level(rawValue: configuration.logLevel) ?? .info
        let toJournal = ProcessEnvironment.all()["JOURNAL_STREAM"] != nil
        LoggingSystem.bootstrap { label in
            var handler = JournalFriendlyLogHandler(label: label, toJournal: toJournal)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "nfq-redirectd")
        let notifier = SystemdNotifier(environment: ProcessEnvironment.all())
        let descriptorStore = FileDescriptorStore(environment: ProcessEnvironment.all(), notifier: notifier, logger: logger)

        let runtime: DaemonRuntime
        do {
            try Preflight.requireNetAdmin()
            runtime = try DaemonRuntime(configuration: configuration, logger: logger, descriptorStore: descriptorStore)
            try runtime.preflight()
            try runtime.start()
            descriptorStore.discardUnclaimed()
            descriptorStore.keep(runtime.storableDescriptors)
        } catch {
            logger.critical("\(error)")
            return 1
        }
        var metrics: MetricsHTTPServer?
        if let listen = configuration.metrics.listen, let address = MetricsAddress(listen) {
            let exporter = PrometheusExporter()
            do {
                metrics = try MetricsHTTPServer(host: address.host, port: address.port) { exporter.render(runtime.statistics()) }
            } catch {
                logger.critical("metrics listener \(listen): \(error)")
                runtime.stop(keepRules: false)
                descriptorStore.empty()
                return 1
            }
        }
        let summary = configuration.summary.split(separator: "\n").joined(separator: "; ")
        logger.info("started: \(summary)")
        notifier.ready(status: "redirecting: \(configuration.redirects.map(\.description).joined(separator: " "))")

        let housekeeping = HousekeepingService(runtime: runtime, notifier: notifier)
        let reload = ReloadService(runtime: runtime, notifier: notifier, loadConfiguration: reloadConfiguration)
        let restart = RestartSignalService()
        let group = ServiceGroup(
            configuration: .init(
                services: [
                    .init(service: housekeeping), .init(service: reload),
                    .init(service: restart, successTerminationBehavior: .gracefullyShutdownGroup),
                ],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        do {
            try await group.run()
        } catch {
            logger.error("service group ended: \(error)")
        }

        notifier.stopping()
        let keepRules = runtime.configuration.keepRulesOnExit || restart.requested
        if restart.requested {
            logger.info("stopping for a restart (SIGUSR2); rules and flows kept for the next start")
        } else {
            let removal = runtime.configuration.ruleManagement.manage ? "removing rules" : "the rules are the operator's ([rules] manage = false)"
            logger.info(keepRules ? "stopping; rules and flows kept for the next start (keep_rules_on_exit)" : "stopping for good; \(removal)")
        }
        metrics?.shutdown()
        runtime.stop(keepRules: keepRules)
        if !keepRules { descriptorStore.empty() }
        logger.info("stopped")
        return 0
    }
}

/// Once a second: expire flows, check the firewall rules are still there, and ping the systemd watchdog only while every datapath
/// thread shows progress, so a hung datapath is restarted instead of black-holing traffic.
struct HousekeepingService: Service {
    let runtime: DaemonRuntime
    let notifier: SystemdNotifier

    func run() async throws {
        // Cancelled at once on shutdown, so a stop never waits for the rest of a tick.
        await cancelWhenGracefulShutdown { [runtime, notifier] in
            await Self.sweepAndWatch(runtime: runtime, notifier: notifier)
        }
    }

    private static func sweepAndWatch(runtime: DaemonRuntime, notifier: SystemdNotifier) async {
        var gate = DatapathLivenessGate(progress: runtime.workerProgress)
        while true {
            try? await Task.sleep(for: .seconds(1))
            if Task.isCancelled { return }
            runtime.sweep()
            runtime.checkRules()
            let stuck = gate.stuckThreads(progress: runtime.workerProgress)
            if stuck.isEmpty {
                if notifier.watchdogInterval != nil { notifier.watchdog() }
            } else {
                runtime.logger.warning(
                    "datapath thread\(stuck.count == 1 ? "" : "s") \(stuck.map(String.init).joined(separator: ", ")) made no progress for a second; withholding the watchdog ping"
                )
            }
        }
    }
}

/// SIGUSR2: stop for a restart. Like SIGTERM, except that the rules stay in the kernel and
/// the flow table is saved whatever `keep_rules_on_exit` says, so the daemon started next
/// carries on every flow (docs/operations.md, "Restart and stop").
final class RestartSignalService: Service, Sendable {
    private let flag = AtomicCounter()

    var requested: Bool { flag.load != 0 }

    func run() async throws {
        let signals = await UnixSignalsSequence(trapping: .sigusr2)
        for await _ in signals.cancelOnGracefulShutdown() {
            flag.add(1)
            return
        }
    }
}

/// SIGHUP: re-read the configuration and apply it, or keep the running one and say why.
struct ReloadService: Service {
    let runtime: DaemonRuntime
    let notifier: SystemdNotifier
    let loadConfiguration: @Sendable () throws(ConfigurationError) -> DaemonConfiguration

    func run() async throws {
        let signals = await UnixSignalsSequence(trapping: .sighup)
        for await _ in signals.cancelOnGracefulShutdown() {
            notifier.reloading()
            do {
                let new = try loadConfiguration()
                try runtime.reload(new)
                runtime.reloadsApplied.add(1)
                runtime.logger.info("reloaded: \(new.summary.split(separator: "\n").joined(separator: "; "))")
                notifier.ready(status: "redirecting: \(new.redirects.map(\.description).joined(separator: " "))")
            } catch {
                runtime.reloadsRefused.add(1)
                runtime.logger.error("reload refused, keeping the running configuration: \(error)")
                notifier.ready(status: "reload refused: \(error)")
            }
        }
    }
}
