import Synchronization

/// The table's shards, each behind its own lock, in one allocation.
///
/// Why unsafe: an array of class boxes would cost a reference-count increment and decrement
/// (two atomic operations on a shared cache line) on every packet just to reach the lock, and
/// would let neighbouring shards share cache lines. Here each `Mutex<FlowShard>` sits at its
/// own 128-byte-aligned stride, so threads working on different shards never write to the
/// same cache line (or to the pair the adjacent-line prefetcher couples), and reaching a shard
/// is pointer arithmetic. Indexes are bounds-checked by the caller's hash reduction and here in
/// debug builds. Sendable because the buffer never changes after init and every access to a
/// shard goes through that shard's `Mutex`.
struct LockedShards: ~Copyable, @unchecked Sendable {
    private let base: UnsafeMutableRawPointer
    private let stride: Int
    let count: Int

    private static let alignment = 128

    init(count: Int, makeShard: (Int) -> FlowShard) {
        precondition(count >= 1, "at least one shard")
        let size = MemoryLayout<Mutex<FlowShard>>.size
        stride = (size + Self.alignment - 1) / Self.alignment * Self.alignment
        self.count = count
        base = .allocate(byteCount: stride * count, alignment: max(Self.alignment, MemoryLayout<Mutex<FlowShard>>.alignment))
        for index in 0..<count {
            shard(index).initialize(to: Mutex(makeShard(index)))
        }
    }

    deinit {
        for index in 0..<count {
            _ = shard(index).deinitialize(count: 1)
        }
        base.deallocate()
    }

    @inline(__always)
    private func shard(_ index: Int) -> UnsafeMutablePointer<Mutex<FlowShard>> {
        assert(index >= 0 && index < count)
        return (base + index * stride).assumingMemoryBound(to: Mutex<FlowShard>.self)
    }

    /// Runs `body` on shard `index` under its lock.
    @inline(__always)
    func withLock<Result>(_ index: Int, _ body: (inout FlowShard) -> Result) -> Result {
        shard(index).pointee.withLock { body(&$0) }
    }
}
