import CNativeAnswers
import Glibc
import RedirectCore
import SystemCalls

/// The cgroup/getsockopt program that makes the kernel itself answer
/// getsockopt(SO_ORIGINAL_DST) for the daemon's flows, to every process with nothing
/// preloaded (Sources/CNativeAnswers: the program, its map layout and loader).
///
/// Life: `start` adopts this namespace's program left attached by an earlier run (a restart
/// or a crash: its answers never went away) or loads and attaches a new one. `release` (a
/// restart) closes the descriptors and leaves it attached for the next run; `detach` (a stop
/// for good) takes it off the cgroup, and its map goes with it.
public final class BPFGetsockoptHook: NativeAnswerMap, @unchecked Sendable {
    // @unchecked: `state` is written only by start/release/detach, which the daemon calls
    // before its threads start and after they stop; the map descriptors are used concurrently
    // only through bpf(2), which needs no lock, and a batch's held writes are thread-local.
    private var state: nfqr_native_answers
    /// The namespace whose sockets the program answers for (SO_NETNS_COOKIE).
    public let netnsCookie: UInt64
    /// The cgroup the program is attached to, as found or configured.
    public let cgroup: String
    /// True when an earlier run's program (and its answers) was taken over.
    public var adopted: Bool { state.adopted }
    public var programID: UInt32 { state.program_id }
    public var capacity: Int { Int(state.max_entries) }

    private init(state: nfqr_native_answers, netnsCookie: UInt64, cgroup: String) {
        self.state = state
        self.netnsCookie = netnsCookie
        self.cgroup = cgroup
    }

    /// Whether this binary carries the BPF object (built by the Makefile's `bpf` step).
    public static var isBuiltIn: Bool { nfqr_native_answers_built_in() }

    /// Adopts or loads and attaches the program on `cgroupPath` (nil: the cgroup v2 root),
    /// sized for `capacity` answers. The error's text is the one log line a host without the
    /// hook gets.
    public static func start(cgroupPath: String?, capacity: Int) throws(KernelError) -> BPFGetsockoptHook {
        let cookie = try currentNetnsCookie()
        let (fd, used) = try openCgroup(cgroupPath)
        var state = nfqr_native_answers(cgroup_fd: -1, program_fd: -1, map_fd: -1, program_id: 0, max_entries: 0, adopted: false)
        var why = [CChar](repeating: 0, count: 512)
        let result = nfqr_native_answers_start(fd, cookie, UInt32(clamping: capacity), &state, &why, why.count)
        guard result == 0 else {
            close(fd)
            throw .invalidConfiguration(String(cString: why))
        }
        return BPFGetsockoptHook(state: state, netnsCookie: cookie, cgroup: used)
    }

    /// Detaches this namespace's programs from `cgroupPath` (nil: the cgroup v2 root), for
    /// clean-up after a daemon that could not (a crash). Returns how many were detached.
    @discardableResult
    public static func removeLeftovers(cgroupPath: String?) throws(KernelError) -> Int {
        let cookie = try currentNetnsCookie()
        let (fd, _) = try openCgroup(cgroupPath)
        defer { close(fd) }
        var why = [CChar](repeating: 0, count: 512)
        let result = nfqr_native_answers_remove_owned(fd, cookie, &why, why.count)
        guard result >= 0 else { throw .invalidConfiguration(String(cString: why)) }
        return Int(result)
    }

    /// Detaches programs whose namespace is gone (a daemon killed, then its namespace deleted),
    /// which nothing else would ever take off. Returns how many.
    @discardableResult
    public static func removeOrphans(cgroupPath: String?) throws(KernelError) -> Int {
        let (fd, _) = try openCgroup(cgroupPath)
        defer { close(fd) }
        var why = [CChar](repeating: 0, count: 512)
        let result = nfqr_native_answers_remove_orphans(fd, &why, why.count)
        guard result >= 0 else { throw .invalidConfiguration(String(cString: why)) }
        return Int(result)
    }

    /// How many programs of this namespace's daemon are attached to `cgroupPath`.
    public static func attachedCount(cgroupPath: String?) throws(KernelError) -> Int {
        let cookie = try currentNetnsCookie()
        let (fd, _) = try openCgroup(cgroupPath)
        defer { close(fd) }
        let result = nfqr_native_answers_count_owned(fd, cookie)
        guard result >= 0 else { throw .system(call: "bpf(BPF_PROG_QUERY)", errno: Errno(rawValue: -result)) }
        return Int(result)
    }

    private static func currentNetnsCookie() throws(KernelError) -> UInt64 {
        var cookie: UInt64 = 0
        let result = nfqr_netns_cookie(&cookie)
        guard result == 0 else { throw .system(call: "getsockopt(SO_NETNS_COOKIE)", errno: Errno(rawValue: -result)) }
        return cookie
    }

    private static func openCgroup(_ path: String?) throws(KernelError) -> (CInt, String) {
        var used = [CChar](repeating: 0, count: 4096)
        var why = [CChar](repeating: 0, count: 512)
        let fd = nfqr_cgroup_open(path, &used, used.count, &why, why.count)
        guard fd >= 0 else { throw .invalidConfiguration(String(cString: why)) }
        return (fd, String(cString: used))
    }

    /// Closes the descriptors, leaving the program and its answers for the next run.
    public func release() { nfqr_native_answers_release(&state) }

    /// Detaches the program; its map and every answer go with it.
    public func detach() throws(KernelError) {
        let result = nfqr_native_answers_detach(&state)
        guard result == 0 else { throw .system(call: "bpf(BPF_PROG_DETACH)", errno: Errno(rawValue: -result)) }
    }

    // MARK: NativeAnswerMap

    public func put(local: Endpoint, peer: Endpoint, originalDestination: Endpoint) -> CInt {
        var key = key(local: local, peer: peer)
        var value = nfqr_origdst_value()
        value.addr = Self.words(originalDestination.address)
        value.port = originalDestination.port.bigEndian
        value.family = UInt8(originalDestination.address.isIPv4 ? NFQR_FAMILY_INET : NFQR_FAMILY_INET6)
        return -nfqr_native_answers_put(&state, &key, &value)
    }

    public func remove(local: Endpoint, peer: Endpoint) -> CInt {
        var key = key(local: local, peer: peer)
        return -nfqr_native_answers_delete(&state, &key)
    }

    public func answer(local: Endpoint, peer: Endpoint) -> Endpoint? {
        var key = key(local: local, peer: peer)
        var value = nfqr_origdst_value()
        guard nfqr_native_answers_get(&state, &key, &value) == 0 else { return nil }
        return Endpoint(Self.address(value.addr), UInt16(bigEndian: value.port))
    }

    public func beginBatch() { nfqr_native_answers_begin_batch(&state) }

    public func endBatch(_ written: (NativeAnswerPair, Endpoint) -> Void) -> CInt {
        let result = nfqr_native_answers_flush(&state)
        guard result > 0 else { return -min(result, 0) }
        var key = nfqr_origdst_key()
        var value = nfqr_origdst_value()
        for index in 0..<UInt32(result) {
            nfqr_native_answers_flushed(index, &key, &value)
            written(
                NativeAnswerPair(
                    local: Endpoint(Self.address(key.local_addr), key.local_port),
                    peer: Endpoint(Self.address(key.peer_addr), key.peer_port)),
                Endpoint(Self.address(value.addr), UInt16(bigEndian: value.port)))
        }
        return 0
    }

    public func pairs() -> [NativeAnswerPair] {
        var pairs: [NativeAnswerPair] = []
        var key = nfqr_origdst_key()
        var next = nfqr_origdst_key()
        var result = nfqr_native_answers_next_key(&state, nil, &next)
        while result == 0 {
            if next.netns_cookie == netnsCookie {
                pairs.append(
                    NativeAnswerPair(
                        local: Endpoint(Self.address(next.local_addr), next.local_port),
                        peer: Endpoint(Self.address(next.peer_addr), next.peer_port)))
            }
            key = next
            result = nfqr_native_answers_next_key(&state, &key, &next)
        }
        return pairs
    }

    @inline(__always)
    private func key(local: Endpoint, peer: Endpoint) -> nfqr_origdst_key {
        var key = nfqr_origdst_key()
        key.netns_cookie = netnsCookie
        key.local_addr = Self.words(local.address)
        key.peer_addr = Self.words(peer.address)
        key.local_port = local.port
        key.peer_port = peer.port
        return key
    }

    /// The address as four network-order words (IPv4-mapped for IPv4, as `IPAddress` holds it).
    @inline(__always)
    static func words(_ address: IPAddress) -> (UInt32, UInt32, UInt32, UInt32) {
        (
            UInt32(truncatingIfNeeded: address.high >> 32).bigEndian, UInt32(truncatingIfNeeded: address.high).bigEndian,
            UInt32(truncatingIfNeeded: address.low >> 32).bigEndian, UInt32(truncatingIfNeeded: address.low).bigEndian
        )
    }

    static func address(_ words: (UInt32, UInt32, UInt32, UInt32)) -> IPAddress {
        IPAddress(
            high: UInt64(UInt32(bigEndian: words.0)) << 32 | UInt64(UInt32(bigEndian: words.1)),
            low: UInt64(UInt32(bigEndian: words.2)) << 32 | UInt64(UInt32(bigEndian: words.3)))
    }
}
