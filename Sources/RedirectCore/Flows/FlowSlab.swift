import Synchronization

/// A shard's fixed array of flow slots with a free list, allocated once at init.
///
/// Slots below `highWater` have been handed out at least once; those not holding a flow are
/// chained through their `expires` field (the free list) and have `isOccupied == false`.
/// Slots above `highWater` are never read, so the memory is reserved but not touched until used.
///
/// The slots live either in private memory or in a shard's region of a shared table file
/// (`SharedFlowFile`), which outlives the process. Either way every write to a slot is
/// bracketed by the dirty-slot protocol (`beginWrite`/`endWrite`) on the shard's control block:
/// the slot's current bytes are copied to the block's undo copy, then the slot's number is
/// stored in its dirty word, then the slot is written, then the dirty word is cleared. A
/// process killed at any instant leaves at most one slot per shard half-written, that slot is
/// named, and its last whole version is in the undo copy (while the dirty word is clear the
/// undo copy may be torn, and no slot is). Only the shard's lock holder writes, so one control
/// block per shard suffices; writes never nest.
///
/// Why unsafe: the packet path updates a flow in place (counters, state, expiry) through a
/// stable address, with no copy-on-write check, reference counting or allocation. Slot numbers
/// come only from this slab or from the indexes that store them, and are checked in debug builds.
struct FlowSlab: ~Copyable {
    private let slots: UnsafeMutablePointer<FlowSlot>
    /// The shard's dirty-slot word (`FlowSlab.clean` when no slot is being written).
    private let dirty: UnsafeMutablePointer<Atomic<UInt32>>
    /// The last whole version of the dirty slot.
    private let undo: UnsafeMutableRawPointer
    /// Whether `slots` and `dirty` are owned (private memory) or belong to a shared mapping.
    private let ownsMemory: Bool
    let capacity: UInt32
    private(set) var highWater: UInt32 = 0
    private var freeHead: UInt32 = FlowSlab.endOfList

    private static let endOfList = UInt32.max
    /// The dirty word's value while no slot is being written.
    static let clean = UInt32.max
    /// A control block: the dirty word, then (at `undoOffset`) the undo copy of one slot.
    static let controlLength = 128
    static let undoOffset = 32

    init(capacity: UInt32) {
        precondition(capacity >= 1 && capacity < FlowSlab.endOfList, "slab capacity out of range")
        self.capacity = capacity
        slots = .allocate(capacity: Int(capacity))
        // Cache lines of its own, so shards never share one through their control blocks.
        let control = UnsafeMutableRawPointer.allocate(byteCount: FlowSlab.controlLength, alignment: 64)
        control.initializeMemory(as: UInt8.self, repeating: 0, count: FlowSlab.controlLength)
        dirty = control.bindMemory(to: Atomic<UInt32>.self, capacity: 1)
        dirty.initialize(to: Atomic(FlowSlab.clean))
        undo = control + FlowSlab.undoOffset
        ownsMemory = true
    }

    /// A slab over `capacity` zero-filled slots and a control block in a shared mapping that
    /// outlives this value (the caller keeps the mapping alive).
    init(capacity: UInt32, sharedSlots: UnsafeMutableRawPointer, control: UnsafeMutableRawPointer) {
        precondition(capacity >= 1 && capacity < FlowSlab.endOfList, "slab capacity out of range")
        self.capacity = capacity
        slots = sharedSlots.bindMemory(to: FlowSlot.self, capacity: Int(capacity))
        dirty = control.bindMemory(to: Atomic<UInt32>.self, capacity: 1)
        dirty.pointee.store(FlowSlab.clean, ordering: .relaxed)
        undo = control + FlowSlab.undoOffset
        ownsMemory = false
    }

    deinit {
        guard ownsMemory else { return }
        slots.deinitialize(count: Int(highWater))
        slots.deallocate()
        UnsafeMutableRawPointer(dirty).deallocate()
    }

    /// Bytes reserved for `capacity` flows.
    var byteCount: Int { Int(capacity) * MemoryLayout<FlowSlot>.stride }

    var hasFreeSlot: Bool { freeHead != FlowSlab.endOfList || highWater < capacity }

    // MARK: Dirty-slot protocol

    /// Saves `slot`'s bytes to the undo copy, then names it as being written. Each release
    /// fence keeps the stores before it ahead of every store after it (on x86 a compiler
    /// barrier only: TSO keeps stores in program order).
    @inline(__always)
    func beginWrite(_ slot: UInt32) {
        assert(dirty.pointee.load(ordering: .relaxed) == FlowSlab.clean, "slot writes nest")
        undo.copyMemory(from: slots + Int(slot), byteCount: MemoryLayout<FlowSlot>.stride)
        atomicMemoryFence(ordering: .releasing)
        dirty.pointee.store(slot, ordering: .relaxed)
        atomicMemoryFence(ordering: .releasing)
        #if DEBUG
            FlowSlab.writeHook?(.begun, UnsafeRawPointer(dirty), slot)
        #endif
    }

    /// The slot is whole again: clears the dirty word after every store to the slot.
    @inline(__always)
    func endWrite(_ slot: UInt32) {
        #if DEBUG
            FlowSlab.writeHook?(.written, UnsafeRawPointer(dirty), slot)
        #endif
        dirty.pointee.store(FlowSlab.clean, ordering: .releasing)
        #if DEBUG
            FlowSlab.writeHook?(.ended, UnsafeRawPointer(dirty), slot)
        #endif
    }

    #if DEBUG
        enum WritePhase { case begun, written, ended }
        /// Tests: called at each boundary of the dirty-slot protocol (under the shard's lock), with
        /// the shard's dirty word and the slot, so a test can capture the shared file there.
        nonisolated(unsafe) static var writeHook: ((WritePhase, UnsafeRawPointer, UInt32) -> Void)?
    #endif

    // MARK: Slots

    /// The flow in `slot`, read and written in place. Writes go between `beginWrite` and `endWrite`.
    subscript(slot: UInt32) -> FlowSlot {
        unsafeAddress {
            assert(slot < highWater && slots[Int(slot)].isOccupied)
            return UnsafePointer(slots + Int(slot))
        }
        nonmutating unsafeMutableAddress {
            assert(slot < highWater && slots[Int(slot)].isOccupied)
            assert(dirty.pointee.load(ordering: .relaxed) == slot, "slot written outside beginWrite/endWrite")
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
            beginWrite(slot)
            slots[Int(slot)] = flow
            slots[Int(slot)].isOccupied = true
            endWrite(slot)
        } else if highWater < capacity {
            slot = highWater
            beginWrite(slot)
            (slots + Int(slot)).initialize(to: flow)
            slots[Int(slot)].isOccupied = true
            endWrite(slot)
            highWater += 1
        } else {
            return nil
        }
        return slot
    }

    /// Returns a slot to the free list.
    mutating func remove(_ slot: UInt32) {
        assert(isOccupied(slot))
        beginWrite(slot)
        slots[Int(slot)].isOccupied = false
        slots[Int(slot)].expires = freeHead
        endWrite(slot)
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
