/// A shard's fixed array of flow slots with a free list, allocated once at init.
///
/// Slots below `highWater` have been handed out at least once; those not holding a flow are
/// chained through their `expires` field (the free list) and have `isOccupied == false`.
/// Slots above `highWater` are never read, so the memory is reserved but not touched until used.
///
/// Why unsafe: the packet path updates a flow in place (counters, state, expiry) through a
/// stable address, with no copy-on-write check, reference counting or allocation. Slot numbers
/// come only from this slab or from the indexes that store them, and are checked in debug builds.
struct FlowSlab: ~Copyable {
    private let slots: UnsafeMutablePointer<FlowSlot>
    let capacity: UInt32
    private(set) var highWater: UInt32 = 0
    private var freeHead: UInt32 = FlowSlab.endOfList

    private static let endOfList = UInt32.max

    init(capacity: UInt32) {
        precondition(capacity >= 1 && capacity < FlowSlab.endOfList, "slab capacity out of range")
        self.capacity = capacity
        slots = .allocate(capacity: Int(capacity))
    }

    deinit {
        slots.deinitialize(count: Int(highWater))
        slots.deallocate()
    }

    /// Bytes reserved for `capacity` flows.
    var byteCount: Int { Int(capacity) * MemoryLayout<FlowSlot>.stride }

    var hasFreeSlot: Bool { freeHead != FlowSlab.endOfList || highWater < capacity }

    /// The flow in `slot`, read and written in place.
    subscript(slot: UInt32) -> FlowSlot {
        unsafeAddress {
            assert(slot < highWater && slots[Int(slot)].isOccupied)
            return UnsafePointer(slots + Int(slot))
        }
        nonmutating unsafeMutableAddress {
            assert(slot < highWater && slots[Int(slot)].isOccupied)
            return slots + Int(slot)
        }
    }

    func isOccupied(_ slot: UInt32) -> Bool { slot < highWater && slots[Int(slot)].isOccupied }

    /// Stores `flow` in a free slot and returns its number, or nil when every slot holds a flow.
    mutating func insert(_ flow: FlowSlot) -> UInt32? {
        let slot: UInt32
        if freeHead != FlowSlab.endOfList {
            slot = freeHead
            freeHead = slots[Int(slot)].expires
            slots[Int(slot)] = flow
            slots[Int(slot)].isOccupied = true
        } else if highWater < capacity {
            slot = highWater
            (slots + Int(slot)).initialize(to: flow)
            slots[Int(slot)].isOccupied = true
            highWater += 1
        } else {
            return nil
        }
        return slot
    }

    /// Returns a slot to the free list.
    mutating func remove(_ slot: UInt32) {
        assert(isOccupied(slot))
        slots[Int(slot)].isOccupied = false
        slots[Int(slot)].expires = freeHead
        freeHead = slot
    }

    /// The length of the free list; for invariant checks.
    var freeListLength: Int {
        var length = 0
        var slot = freeHead
        while slot != FlowSlab.endOfList && length <= Int(capacity) {
            length += 1
            slot = slots[Int(slot)].expires
        }
        return length
    }
}
