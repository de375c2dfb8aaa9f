import FuzzDriver

@testable import Kernel

/// The NFQUEUE netlink datagram parser (netlink headers, then the C attribute parser of the
/// shim): any datagram yields packets whose payloads lie inside the datagram, plus counted
/// errors, never a read outside it. The first input byte sets MSG_TRUNC.
@_cdecl("FuzzQueueMessages_main")
public func main(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    FuzzDriver.run(argc, argv, fuzzQueueMessages)
}

@_cdecl("LLVMFuzzerTestOneInput")
func fuzzQueueMessages(_ input: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data = input else { return 0 }
    guard size >= 1 else { return 0 }
    let length = size - 1
    // A slot exactly as long as the datagram, so AddressSanitizer sees any overrun.
    let batch = PacketBatch(capacity: 8, slotSize: max(length, 1))
    let slot = UnsafeMutableRawBufferPointer(rebasing: batch.slot(0)[0..<length])
    slot.copyMemory(from: UnsafeRawBufferPointer(start: data + 1, count: length))
    var counters = PacketQueueCounters()
    PacketMessageParser.parse(datagram: slot, truncated: data[0] & 1 != 0, into: batch, counters: &counters)
    let start = slot.baseAddress!
    for index in 0..<batch.count {
        let payload = batch[index].payload
        if let base = payload.baseAddress {
            precondition(base >= start && base + payload.count <= start + length, "payload outside the datagram")
        }
    }
    precondition(batch.count <= batch.capacity && batch.unparsedCount <= batch.capacity)
    // Every packet and every unparsed id gets its verdict, within the writer's capacity.
    var sent = 0
    try! VerdictWriter(batchCapacity: batch.capacity).write(
        batch: batch, queueNumber: 0, unparsedPolicy: .drop, useBatchVerdict: false, sendLimit: 1 << 20, counters: &counters
    ) { iovecs, _ in
        for vector in iovecs { sent += vector.iov_len }
    }
    precondition((batch.count + batch.unparsedCount == 0) == (sent == 0))
    return 0
}
