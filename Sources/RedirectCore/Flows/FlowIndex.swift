/// An open-addressing hash index from a flow tuple to its slab slot, sized once at init.
///
/// Each entry is 64 bits: the tuple's 32-bit hash in the high half (it rejects most
/// non-matches without touching the slab, and gives every entry's home bucket back for
/// deletion) and slot + 1 in the low half (0 marks an empty bucket). Linear probing keeps a
/// probe in one or two cache lines; backward-shift deletion leaves no tombstones, so probe
/// lengths never degrade under churn and no rehash is ever needed. The home bucket is
/// `hash * capacity >> 32`, so the capacity need not be a power of two (that saves up to half
/// the index memory). The owner keeps the load at or below its sizing (see FlowShard), so an
/// empty bucket always ends a probe.
///
/// Why unsafe: a fixed-size buffer the packet path reads and writes without allocation,
/// reference counting or copy-on-write checks; every index is reduced modulo `capacity` here.
struct FlowIndex: ~Copyable {
    private let entries: UnsafeMutablePointer<UInt64>
    let capacity: Int

    init(capacity: Int) {
        precondition(capacity >= 2 && capacity <= Int(UInt32.max), "index capacity out of range")
        self.capacity = capacity
        entries = .allocate(capacity: capacity)
        entries.initialize(repeating: 0, count: capacity)
    }

    deinit {
        entries.deallocate()
    }

    var byteCount: Int { capacity * MemoryLayout<UInt64>.stride }

    @inline(__always)
    private func home(of hash: UInt32) -> Int {
        Int(truncatingIfNeeded: (UInt64(hash) &* UInt64(capacity)) >> 32)
    }

    @inline(__always)
    private func next(_ bucket: Int) -> Int {
        bucket + 1 == capacity ? 0 : bucket + 1
    }

    /// The slot of the entry with this hash for which `matches(slot)` holds.
    @inline(__always)
    func find(hash: UInt32, where matches: (UInt32) -> Bool) -> UInt32? {
        var bucket = home(of: hash)
        while true {
            let entry = entries[bucket]
            if entry == 0 { return nil }
            if UInt32(truncatingIfNeeded: entry >> 32) == hash {
                let slot = UInt32(truncatingIfNeeded: entry) &- 1
                if matches(slot) { return slot }
            }
            bucket = next(bucket)
        }
    }

    /// Adds an entry; the caller guarantees the tuple is not already present and the index is not full.
    mutating func insert(hash: UInt32, slot: UInt32) {
        var bucket = home(of: hash)
        while entries[bucket] != 0 { bucket = next(bucket) }
        entries[bucket] = UInt64(hash) << 32 | UInt64(slot &+ 1)
    }

    /// Removes the entry for `slot` (found by its hash) and shifts the rest of its probe run back
    /// so that every remaining entry stays reachable from its home bucket.
    @discardableResult
    mutating func remove(hash: UInt32, slot: UInt32) -> Bool {
        let target = UInt64(hash) << 32 | UInt64(slot &+ 1)
        var hole = home(of: hash)
        while entries[hole] != target {
            if entries[hole] == 0 { return false }
            hole = next(hole)
        }
        var probe = next(hole)
        while true {
            let entry = entries[probe]
            if entry == 0 { break }
            // The entry may fill the hole unless its home lies cyclically in (hole, probe].
            let entryHome = home(of: UInt32(truncatingIfNeeded: entry >> 32))
            let homeToProbe = (probe - entryHome + capacity) % capacity
            let holeToProbe = (probe - hole + capacity) % capacity
            if homeToProbe >= holeToProbe {
                entries[hole] = entry
                hole = probe
            }
            probe = next(probe)
        }
        entries[hole] = 0
        return true
    }

    /// Every entry as (hash, slot), in bucket order; for invariant checks.
    func forEachEntry(_ body: (UInt32, UInt32) -> Void) {
        for bucket in 0..<capacity where entries[bucket] != 0 {
            let entry = entries[bucket]
            body(UInt32(truncatingIfNeeded: entry >> 32), UInt32(truncatingIfNeeded: entry) &- 1)
        }
    }
}
