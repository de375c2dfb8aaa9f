import RedirectCore

/// The kernel's copy of the daemon's answers to getsockopt(SO_ORIGINAL_DST): one entry per
/// redirected TCP flow, keyed by the proxy's socket pair in the daemon's network namespace.
///
/// The real one is `BPFGetsockoptHook` (a cgroup/getsockopt program and its hash map); tests
/// use an in-memory map. Writes report failure as an errno value rather than by throwing, so
/// the datapath, which writes under a flow-table shard lock, never builds an error value.
public protocol NativeAnswerMap: AnyObject, Sendable {
    /// Writes (or rewrites) the answer for the socket `local <-> peer`; 0 or an errno value.
    func put(local: Endpoint, peer: Endpoint, originalDestination: Endpoint) -> CInt
    /// Removes the answer for `local <-> peer`; 0, ENOENT when there was none, or an errno value.
    func remove(local: Endpoint, peer: Endpoint) -> CInt
    /// The (local, peer) pairs the map holds now: to set a restarted table and the map in
    /// agreement again.
    func pairs() -> [NativeAnswerPair]
    /// The answer for `local <-> peer`, as the kernel would give it.
    func answer(local: Endpoint, peer: Endpoint) -> Endpoint?
    /// Holds the calling thread's writes until `endBatch`, so a receive batch's new flows cost
    /// one system call, not one each. Removals still happen at once.
    func beginBatch()
    /// Writes what the calling thread held since `beginBatch`; `written` is given each pair and
    /// answer written, so the caller can check it against the table. 0 or an errno value.
    func endBatch(_ written: (NativeAnswerPair, Endpoint) -> Void) -> CInt
}

extension NativeAnswerMap {
    /// A map without batches writes at once.
    public func beginBatch() {}
    public func endBatch(_ written: (NativeAnswerPair, Endpoint) -> Void) -> CInt { 0 }
}

public struct NativeAnswerPair: Hashable, Sendable {
    public var local: Endpoint
    public var peer: Endpoint

    public init(local: Endpoint, peer: Endpoint) {
        self.local = local
        self.peer = peer
    }
}
