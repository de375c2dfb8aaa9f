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
/// One system call per flow start and end, made by the thread that changed the table. A map
/// write that fails (the map full, memory short) is counted; the flow still works through the
/// lookup socket and the preload library.
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
        case ENOENT: break   // never written (a failed put, or a flow from before the hook)
        default: failed.add(1)
        }
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
