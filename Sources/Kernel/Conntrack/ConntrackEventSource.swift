import RedirectCore

/// Where the daemon learns what the kernel's conntrack does with its flows: ctnetlink
/// (`NetlinkConntrackEvents`) or, in tests, `InMemoryConntrackEvents` (KernelTesting).
///
/// Only the daemon's flows are delivered: entries whose conntrack mark matches the source's
/// mark filter (`ctmark & mask == value`). One thread receives; after `.overrun` it calls
/// `dump` and replaces what it knew. `interrupt()` and `counters` may be used from any thread.
public protocol ConntrackEventSource: AnyObject {
    /// Empties `events` (keeping its capacity), then blocks until events arrive (and takes
    /// every one that is ready, up to the source's per-receive limit), `interrupt()` is called,
    /// or `timeoutMilliseconds` pass (-1: no limit).
    func receive(into events: inout [ConntrackEvent], timeoutMilliseconds: Int32) throws(KernelError) -> ConntrackReceiveResult

    /// Wakes a thread blocked in `receive`, which then returns `.interrupted`.
    func interrupt()

    /// Every current TCP and UDP entry whose `ctmark & markMask == markValue`, as `.update`
    /// events, selected by the kernel (the dump request's mark filter).
    func dump(markValue: UInt32, markMask: UInt32) throws(KernelError) -> [ConntrackEvent]
    /// The one entry whose REPLY tuple is `reply` (the proxy's end -> the client as the proxy
    /// sees it), as an `.update`, or nil when the kernel has none (gone, or expired: the kernel
    /// does not return an expired entry).
    func entry(reply: FlowTuple) throws(KernelError) -> ConntrackEvent?

    /// Totals since the source was created.
    var counters: ConntrackEventCounters { get }
}
