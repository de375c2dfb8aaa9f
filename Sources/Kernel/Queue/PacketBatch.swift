/// The preallocated packets of one receive, shared by the real and the in-memory queue.
///
/// Why unsafe: the batch owns raw buffers the kernel writes into (one slot per datagram)
/// and hands out packets whose payloads point into them, so the datapath reads, rewrites
/// and answers without copying or allocating. Everything is allocated in `init` and freed in
/// `deinit`; a batch is used by one thread at a time.
public final class PacketBatch {
    /// The most packets (and datagrams) one receive takes.
    public let capacity: Int
    /// Bytes of one receive slot (one netlink datagram).
    public let slotSize: Int
    /// Packets received; indices `0..<count` are valid.
    public internal(set) var count = 0

    let slots: UnsafeMutableRawPointer
    let packets: UnsafeMutablePointer<QueuedPacket>
    /// Ids of packets whose messages could not be parsed: they get the fallback verdict.
    let unparsedIDs: UnsafeMutablePointer<UInt32>
    var unparsedCount = 0

    package init(capacity: Int, slotSize: Int) {
        precondition(capacity > 0 && slotSize > 0)
        self.capacity = capacity
        self.slotSize = slotSize
        slots = UnsafeMutableRawPointer.allocate(byteCount: capacity * slotSize, alignment: 16)
        packets = .allocate(capacity: capacity)
        unparsedIDs = .allocate(capacity: capacity)
    }

    deinit {
        packets.deinitialize(count: count)
        packets.deallocate()
        unparsedIDs.deallocate()
        slots.deallocate()
    }

    public var isEmpty: Bool { count == 0 }

    /// The packet at `index` (`0..<count`), in place: `batch[i].verdict = .drop`.
    public subscript(index: Int) -> QueuedPacket {
        unsafeAddress {
            precondition(index >= 0 && index < count, "packet index out of range")
            return UnsafePointer(packets + index)
        }
        unsafeMutableAddress {
            precondition(index >= 0 && index < count, "packet index out of range")
            return packets + index
        }
    }

    /// The receive buffer of slot `index`.
    package func slot(_ index: Int) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: slots + index * slotSize, count: slotSize)
    }

    /// Appends a packet; false when the batch is full.
    package func append(_ packet: QueuedPacket) -> Bool {
        guard count < capacity else { return false }
        (packets + count).initialize(to: packet)
        count += 1
        return true
    }

    /// Records the id of an unparsable packet message; false when there is no room.
    package func appendUnparsed(id: UInt32) -> Bool {
        guard unparsedCount < capacity else { return false }
        unparsedIDs[unparsedCount] = id
        unparsedCount += 1
        return true
    }

    package func removeAll() {
        packets.deinitialize(count: count)
        count = 0
        unparsedCount = 0
    }
}
