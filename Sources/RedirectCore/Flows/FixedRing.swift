/// A bounded ring that keeps the newest `capacity` elements, overwriting the oldest; allocated
/// once, so appending never allocates.
///
/// Why unsafe: a fixed buffer appended to under a shard lock on the packet path, without the
/// copy-on-write checks and growth of an array; positions are always reduced modulo `capacity`.
struct FixedRing<Element>: ~Copyable {
    private let storage: UnsafeMutablePointer<Element>
    let capacity: Int
    private(set) var count = 0
    /// Where the next element goes.
    private var head = 0
    /// Elements overwritten before anyone read them.
    private(set) var overwritten: UInt64 = 0

    /// A capacity of 0 makes a ring that holds nothing and counts nothing.
    init(capacity: Int) {
        precondition(capacity >= 0, "ring capacity out of range")
        self.capacity = capacity
        storage = .allocate(capacity: max(capacity, 1))
    }

    deinit {
        storage.deinitialize(count: count)
        storage.deallocate()
    }

    var byteCount: Int { capacity * MemoryLayout<Element>.stride }

    mutating func append(_ element: Element) {
        guard capacity > 0 else { return }
        if count < capacity {
            (storage + head).initialize(to: element)
            count += 1
        } else {
            storage[head] = element
            overwritten &+= 1
        }
        head = head + 1 == capacity ? 0 : head + 1
    }

    /// The newest element satisfying `predicate`.
    func newest(where predicate: (Element) -> Bool) -> Element? {
        var position = head
        for _ in 0..<count {
            position = position == 0 ? capacity - 1 : position - 1
            if predicate(storage[position]) { return storage[position] }
        }
        return nil
    }

    /// Hands every element to `body`, oldest first, and empties the ring.
    mutating func drain(_ body: (Element) -> Void) {
        var position = (head - count + capacity) % max(capacity, 1)
        for _ in 0..<count {
            body(storage[position])
            position = position + 1 == capacity ? 0 : position + 1
        }
        storage.deinitialize(count: count)
        count = 0
        head = 0
    }
}
