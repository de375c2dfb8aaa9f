import Kernel
import RedirectCore
import SystemCalls

/// Conntrack events in memory, for testing the daemon without a kernel.
///
/// Tests `push` events (or an overrun) and set `table`, what `dump` answers (filtered by
/// the mark as the kernel would). `receive` applies the configured mark filter like the
/// real source and blocks like it (until something is pushed, `interrupt()`, or the timeout).
public final class InMemoryConntrackEvents: ConntrackEventSource, @unchecked Sendable {
    private enum Pending {
        case event(ConntrackEvent)
        case overrun
    }

    private struct State {
        var pending: [Pending] = []
        var table: [ConntrackEvent] = []
        var counters = ConntrackEventCounters()
        var dumps = 0
    }

    public let markValue: UInt32
    /// Deliver the entries whose `mark & markMask != markValue` instead (as the real source).
    public let negated: Bool
    public let markMask: UInt32
    public let eventsPerReceive: Int
    private let state = Locked(State())
    private let readable: WakeUpChannel
    private let wakeUp: WakeUpChannel

    public init(markValue: UInt32 = 0, markMask: UInt32 = 0, negated: Bool = false, eventsPerReceive: Int = 256) throws(KernelError) {
        self.negated = negated
        guard eventsPerReceive > 0 else { throw .invalidConfiguration("events per receive must be positive") }
        self.markValue = markValue
        self.markMask = markMask
        self.eventsPerReceive = eventsPerReceive
        readable = try kernelCall { () throws(SystemCallError) in try WakeUpChannel() }
        wakeUp = try kernelCall { () throws(SystemCallError) in try WakeUpChannel() }
    }

    /// Queues events as the kernel would send them (other marks are filtered on receive).
    public func push(_ events: ConntrackEvent...) { push(contentsOf: events) }

    public func push(contentsOf events: [ConntrackEvent]) {
        state.withLock { $0.pending += events.map(Pending.event) }
        readable.signal()
    }

    /// Makes the receive after the events pushed so far report `.overrun`.
    public func pushOverrun() {
        state.withLock { $0.pending.append(.overrun) }
        readable.signal()
    }

    /// What `dump` reports (as `.update`s, those of the asked mark only).
    public var table: [ConntrackEvent] {
        get { state.withLock { $0.table } }
        set { state.withLock { $0.table = newValue } }
    }

    /// How many dumps were asked for.
    public var dumpCount: Int { state.withLock { $0.dumps } }

    public var counters: ConntrackEventCounters { state.withLock { $0.counters } }

    public func interrupt() { wakeUp.signal() }

    public func receive(into events: inout [ConntrackEvent], timeoutMilliseconds: Int32) throws(KernelError) -> ConntrackReceiveResult {
        events.removeAll(keepingCapacity: true)
        while true {
            let outcome = state.withLock { state -> ConntrackReceiveResult? in
                guard !state.pending.isEmpty else { return nil }
                var consumed = 0
                var result = ConntrackReceiveResult.received
                for pending in state.pending {
                    guard events.count < eventsPerReceive else { break }
                    consumed += 1
                    switch pending {
                    case .overrun:
                        state.counters.overruns &+= 1
                        result = .overrun
                    case .event(let event):
                        if (event.mark & markMask == markValue) != negated {
                            events.append(event)
                            state.counters.received &+= 1
                        } else {
                            state.counters.filtered &+= 1
                        }
                    }
                    if result == .overrun { break }
                }
                state.pending.removeFirst(consumed)
                return result
            }
            if let outcome { return outcome }
            switch try kernelCall({ () throws(SystemCallError) in
                try ReadinessWait.wait(for: readable.descriptor, wakeUp: wakeUp, timeoutMilliseconds: timeoutMilliseconds)
            }) {
            case .readable: readable.drain()
            case .wokenUp: return .interrupted
            case .timedOut: return .timedOut
            }
        }
    }

    public func entry(reply: FlowTuple) throws(KernelError) -> ConntrackEvent? {
        state.withLock { state in
            state.table.first { $0.reply == reply }.map { entry in
                var found = entry
                found.kind = .update
                return found
            }
        }
    }

    public func dump(markValue: UInt32, markMask: UInt32) throws(KernelError) -> [ConntrackEvent] {
        guard markValue & ~markMask == 0 else { throw .invalidConfiguration("conntrack mark has bits outside its mask") }
        return state.withLock { state in
            state.dumps += 1
            return state.table.filter { $0.mark & markMask == markValue }.map { entry in
                var entry = entry
                entry.kind = .update
                return entry
            }
        }
    }
}
