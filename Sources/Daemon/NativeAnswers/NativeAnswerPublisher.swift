import Glibc
import Kernel
import RedirectCore

/// Keeps the kernel's getsockopt answers (`NativeAnswerMap`, the BPF hook's map) in step with
/// the flow table: the table calls it, under the flow's shard lock, as each redirected flow
/// starts and ends, so an answer exists before the verdict for the SYN that creates its flow
/// (a proxy cannot accept the connection, let alone ask, any earlier) and leaves with the
/// flow. Only TCP flows are published: the kernel's getsockopt(SO_ORIGINAL_DST) answers for
/// TCP (and SCTP) sockets only, so UDP original destinations come from the lookup socket.
///
/// Costs: a datapath thread holds the writes of a receive batch (`openBatch`) and makes them
/// with one system call before it sends the batch's verdicts (`closeBatch`); any other thread
/// (a restore, a lookup) writes at once. A flow's end is one system call at once, which also
/// drops a held write of the same pair. A write that fails (the map full, memory short) is
/// counted; the flow still works through the lookup socket and the preload library.
final class NativeAnswerPublisher: RedirectedFlowObserver {
    private let map = Locked<(any NativeAnswerMap)?>(nil)
    let written = AtomicCounter()
    let removed = AtomicCounter()
    let failed = AtomicCounter()

    /// Starts publishing into `map` (nil: stops).
    func publish(into map: (any NativeAnswerMap)?) {
        self.map.withLock { $0 = map }
    }

    var target: (any NativeAnswerMap)? { map.withLock { $0 } }

    func redirectedFlowStarted(_ flow: RedirectedFlow) {
        guard flow.proto == .tcp, let map = target else { return }
        if map.put(local: flow.target, peer: flow.client, originalDestination: flow.originalDestination) == 0 {
            written.add(1)
        } else {
            failed.add(1)
        }
    }

    func redirectedFlowEnded(_ flow: RedirectedFlow) {
        guard flow.proto == .tcp, let map = target else { return }
        switch map.remove(local: flow.target, peer: flow.client) {
        case 0: removed.add(1)
        case ENOENT: break  // never written (a failed put, or a flow from before the hook)
        default: failed.add(1)
        }
    }

    /// Starts holding the calling datapath thread's writes; nil when nothing is published.
    func openBatch() -> (any NativeAnswerMap)? {
        guard let map = target else { return nil }
        map.beginBatch()
        return map
    }

    /// Writes the held answers, then checks each against `table`: with several datapath
    /// threads another one may have ended (evicted) the flow after its write was held; then
    /// the entry goes again (a later end removes it itself).
    func closeBatch(_ map: any NativeAnswerMap, table: FlowTable, now: UInt32) {
        let result = map.endBatch { pair, answer in
            switch table.lookup(proto: .tcp, client: pair.peer, local: pair.local, now: now) {
            case .redirected(let original) where original == answer:
                break
            case .redirected(let original):
                _ = map.put(local: pair.local, peer: pair.peer, originalDestination: original)
            default:
                _ = map.remove(local: pair.local, peer: pair.peer)
            }
        }
        if result != 0 { failed.add(1) }
    }

    /// Makes the map hold exactly the table's redirected TCP flows: after a restart restored
    /// the table into a map an earlier run left (entries of flows that ended meanwhile go).
    /// Returns how many stale entries were removed.
    func reconcile(with records: [FlowRecord]) -> Int {
        guard let map = target else { return 0 }
        var live = Set<NativeAnswerPair>()
        for record in records where record.proto == .tcp {
            guard let target = record.redirectTarget else { continue }
            live.insert(NativeAnswerPair(local: target, peer: record.client))
            if map.answer(local: target, peer: record.client) != record.originalDestination {
                _ = map.put(local: target, peer: record.client, originalDestination: record.originalDestination)
            }
        }
        var stale = 0
        for pair in map.pairs() where !live.contains(pair) {
            if map.remove(local: pair.local, peer: pair.peer) == 0 { stale += 1 }
        }
        return stale
    }
}
