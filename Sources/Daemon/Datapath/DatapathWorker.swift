import Kernel
import Logging
import RedirectCore

/// One datapath thread: receive a batch from its queue, let the engine decide (and rewrite
/// in place) each packet, send the batch's verdicts in one go. Nothing here allocates per
/// packet; the batch, the engine and the counters are made once.
final class DatapathWorker: @unchecked Sendable {
    let queue: any PacketQueue
    let direction: PacketMetadata.Direction
    let engine: RedirectEngine
    private let rules: SnapshotBox<DatapathRules>
    private let clock: @Sendable () -> UInt32
    private let logger: Logger
    private let problems: RateLimitedLog
    /// Bumped after every receive (including time-outs): the watchdog's proof of life.
    let progress = AtomicCounter()
    let receiveErrors = AtomicCounter()
    let sendErrors = AtomicCounter()
    /// Packets whose captured payload was shorter than the packet: passed, never rewritten.
    let truncatedCaptures = AtomicCounter()
    /// Bytes by the verdict they got (packets by verdict are the engine's counters).
    let acceptedBytes = AtomicCounter()
    let rewrittenBytes = AtomicCounter()
    let markedBytes = AtomicCounter()
    let droppedBytes = AtomicCounter()
    /// Time from a batch's arrival to its verdicts being sent, per batch.
    let batchLatency = LatencyHistogram()
    private let stopRequested = AtomicCounter()
    /// Where the getsockopt hook's answers go (the original direction creates flows).
    private let nativeAnswers: NativeAnswerPublisher?

    init(
        queue: any PacketQueue, direction: PacketMetadata.Direction, table: FlowTable,
        rules: SnapshotBox<DatapathRules>, clock: @escaping @Sendable () -> UInt32, logger: Logger,
        nativeAnswers: NativeAnswerPublisher? = nil
    ) {
        self.queue = queue
        self.direction = direction
        self.engine = RedirectEngine(table: table)
        self.rules = rules
        self.clock = clock
        self.logger = logger
        self.problems = RateLimitedLog(logger: logger, interval: 10)
        self.nativeAnswers = direction == .original ? nativeAnswers : nil
    }

    /// Runs until `stop()`.
    func run() {
        let batch = queue.makeBatch()
        while stopRequested.load == 0 {
            let result: ReceiveResult
            do {
                // A short idle wait keeps `progress` moving several times per housekeeping
                // tick, so an idle thread is never mistaken for a hung one.
                result = try queue.receive(into: batch, timeoutMilliseconds: 250)
            } catch {
                receiveErrors.add(1)
                problems.warning("queue \(queue.queueNumber): receive failed: \(error)")
                progress.add(1)
                continue
            }
            progress.add(1)
            guard result == .received else { continue }
            // One snapshot and one clock read per batch: a batch never sees half a reload.
            let started = ContinuousClock.now
            let rules = self.rules.value
            let now = clock()
            // The batch's new flows reach the getsockopt hook in one write, before the verdicts.
            let answers = nativeAnswers?.openBatch()
            for index in 0..<batch.count {
                guard let metadata = batch[index].metadata(direction: direction) else { continue }
                if batch[index].isTruncated {
                    truncatedCaptures.add(1)
                    continue
                }
                var mark: UInt32 = 0
                let verdict = engine.process(batch[index].payload, metadata: metadata, rules: rules, now: now, mark: &mark)
                batch[index].verdict = verdict
                if verdict == .acceptMarked, let marks = rules.kernelNAT {
                    // The packet's own mark bits outside the daemon's mask are kept.
                    batch[index].mark = marks.applying(mark, to: batch[index].mark)
                }
                countBytes(UInt64(batch[index].payload.count), verdict)
            }
            if let answers { nativeAnswers?.closeBatch(answers, table: engine.table, now: now) }
            do {
                try queue.sendVerdicts(for: batch)
            } catch {
                sendErrors.add(1)
                problems.warning("queue \(queue.queueNumber): sending verdicts failed: \(error)")
            }
            batchLatency.record(ContinuousClock.now - started)
        }
    }

    private func countBytes(_ bytes: UInt64, _ verdict: Verdict) {
        switch verdict {
        case .accept: acceptedBytes.add(bytes)
        case .acceptMarked: markedBytes.add(bytes)
        case .acceptModified: rewrittenBytes.add(bytes)
        case .drop: droppedBytes.add(bytes)
        }
    }

    /// Asks the thread to finish its current batch and return.
    func stop() {
        stopRequested.add(1)
        queue.interrupt()
    }
}
