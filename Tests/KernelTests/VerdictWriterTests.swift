import CNetfilterQueue
import RedirectCore
import XCTest

@testable import Kernel

final class VerdictWriterTests: XCTestCase {
    /// A batch holding packets with the given ids, payloads and verdicts.
    private func batch(_ packets: [(id: UInt32, payload: [UInt8], verdict: Verdict)], truncatedIDs: Set<UInt32> = [], unparsed: [UInt32] = [])
        -> PacketBatch
    {
        let batch = PacketBatch(capacity: 8, slotSize: 256)
        for (index, packet) in packets.enumerated() {
            let slot = batch.slot(index)
            slot.copyBytes(from: packet.payload)
            _ = batch.append(
                QueuedPacket(
                    id: packet.id, hardwareProtocol: 0x0800, hook: 3,
                    packetLength: truncatedIDs.contains(packet.id) ? 1000 : packet.payload.count,
                    payload: UnsafeMutableRawBufferPointer(rebasing: slot[..<packet.payload.count]), verdict: packet.verdict))
        }
        for id in unparsed { _ = batch.appendUnparsed(id: id) }
        return batch
    }

    /// Writes the verdicts and returns each datagram's bytes.
    private func write(_ batch: PacketBatch, useBatchVerdict: Bool = true, sendLimit: Int = .max, counters: inout PacketQueueCounters) -> [[UInt8]] {
        var datagrams: [[UInt8]] = []
        try! VerdictWriter(batchCapacity: 8).write(
            batch: batch, queueNumber: 5, unparsedPolicy: .drop, useBatchVerdict: useBatchVerdict, sendLimit: sendLimit, counters: &counters
        ) { iovecs, length in
            var bytes: [UInt8] = []
            for vector in iovecs { bytes += UnsafeRawBufferPointer(start: vector.iov_base, count: vector.iov_len) }
            XCTAssertEqual(bytes.count, length)
            datagrams.append(bytes)
        }
        return datagrams
    }

    private func verdict(_ type: UInt16, _ verdict: UInt32, id: UInt32, payload: [UInt8]? = nil) -> [UInt8] {
        var body = Fixture.nfgen(queue: 5)
        body[0] = 0  // AF_UNSPEC
        body += Fixture.attribute(2, Fixture.be32(verdict) + Fixture.be32(id))
        if let payload { body += Fixture.attribute(10, payload) }
        return Fixture.message(type: type, flags: 1, body)
    }

    func testDropsAndRewritesGoFirstAndOneBatchVerdictCoversTheUnmodifiedAccepts() {
        var counters = PacketQueueCounters()
        let datagrams = write(
            batch([
                (1, [0x45, 1], .accept), (2, [0x45, 2], .drop), (3, [0x45, 3, 3, 3, 3], .acceptModified), (4, [0x45, 4], .accept),
            ]), counters: &counters)
        XCTAssertEqual(
            datagrams,
            [
                verdict(0x0301, 0, id: 2) + verdict(0x0301, 1, id: 3, payload: [0x45, 3, 3, 3, 3]) + verdict(0x0303, 1, id: 4)
            ])
        XCTAssertEqual(counters.acceptedUnmodified, 2)
        XCTAssertEqual(counters.acceptedModified, 1)
        XCTAssertEqual(counters.dropped, 1)
        XCTAssertEqual(counters.batchVerdictMessages, 1)
    }

    func testWithoutBatchVerdictsEveryPacketHasItsOwnMessage() {
        var counters = PacketQueueCounters()
        let datagrams = write(batch([(1, [1], .accept), (2, [2], .accept)]), useBatchVerdict: false, counters: &counters)
        XCTAssertEqual(datagrams, [verdict(0x0301, 1, id: 1) + verdict(0x0301, 1, id: 2)])
        XCTAssertEqual(counters.batchVerdictMessages, 0)
    }

    func testASingleAcceptIsAPlainVerdictAndUnparsedIDsGetThePolicy() {
        var counters = PacketQueueCounters()
        let datagrams = write(batch([(7, [1], .accept)], unparsed: [8]), counters: &counters)
        XCTAssertEqual(datagrams, [verdict(0x0301, 0, id: 8) + verdict(0x0301, 1, id: 7)])
    }

    func testARewriteOfATruncatedPacketIsSentAsADrop() {
        var counters = PacketQueueCounters()
        let datagrams = write(batch([(1, [1, 2, 3, 4], .acceptModified)], truncatedIDs: [1]), counters: &counters)
        XCTAssertEqual(datagrams, [verdict(0x0301, 0, id: 1)])
        XCTAssertEqual(counters.rejectedRewrites, 1)
        XCTAssertEqual(counters.dropped, 1)
    }

    func testTheSendLimitSplitsDatagramsAndKeepsTheBatchVerdictLast() {
        var counters = PacketQueueCounters()
        let datagrams = write(batch([(1, [1], .accept), (2, [2], .drop), (3, [3], .drop), (4, [4], .accept)]), sendLimit: 70, counters: &counters)
        XCTAssertEqual(datagrams, [verdict(0x0301, 0, id: 2) + verdict(0x0301, 0, id: 3), verdict(0x0303, 1, id: 4)])
    }

    func testAnEmptyBatchSendsNothing() {
        var counters = PacketQueueCounters()
        XCTAssertEqual(write(batch([]), counters: &counters), [])
    }

    /// The same message as libnetfilter_queue's own builders produce.
    func testHeadersMatchLibnetfilterQueue() {
        for payloadLength in [nil, 0, 1, 2, 3, 4, 5, 1499] as [Int?] {
            let payload = (0..<(payloadLength ?? 0)).map { UInt8(truncatingIfNeeded: $0 &* 7) }
            var expected = [UInt8](repeating: 0, count: 2048)
            let expectedLength = expected.withUnsafeMutableBytes { raw -> Int in
                let header = nfq_nlmsg_put(raw.baseAddress!.assumingMemoryBound(to: CChar.self), Int32(NFQNL_MSG_VERDICT.rawValue), 5)!
                nfq_nlmsg_verdict_put(header, 0x1234_5678, Int32(NF_ACCEPT))
                if payloadLength != nil { nfq_nlmsg_verdict_put_pkt(header, payload, UInt32(payload.count)) }
                return Int(header.pointee.nlmsg_len)
            }
            var actual = [UInt8](repeating: 0, count: 64)
            actual.withUnsafeMutableBytes {
                VerdictWriter.encodeHeader(into: $0, type: 0x0301, queue: 5, verdict: 1, id: 0x1234_5678, payloadLength: payloadLength)
            }
            let headerLength = payloadLength == nil ? 32 : 36
            let padding = (4 - payload.count % 4) % 4
            XCTAssertEqual(expectedLength, headerLength + payload.count + padding, "\(String(describing: payloadLength))")
            XCTAssertEqual(Array(actual[..<headerLength]), Array(expected[..<headerLength]), "\(String(describing: payloadLength))")
        }
    }

    func testAMarkedAcceptCarriesTheMarkLikeLibnetfilterQueue() {
        var expected = [UInt8](repeating: 0, count: 256)
        let expectedLength = expected.withUnsafeMutableBytes { raw -> Int in
            let header = nfq_nlmsg_put(raw.baseAddress!.assumingMemoryBound(to: CChar.self), Int32(NFQNL_MSG_VERDICT.rawValue), 5)!
            nfq_nlmsg_verdict_put(header, 9, Int32(NF_ACCEPT))
            nfq_nlmsg_verdict_put_mark(header, 0xf02f_0539)
            return Int(header.pointee.nlmsg_len)
        }
        let marked = batch([(7, [0x45, 7], .accept), (9, [0x45, 9], .acceptMarked)])
        marked.packets[1].mark = 0xf02f_0539
        var counters = PacketQueueCounters()
        let datagrams = write(marked, counters: &counters)
        XCTAssertEqual(expectedLength, 40)
        XCTAssertEqual(datagrams, [Array(expected[..<40]) + verdict(0x0301, 1, id: 7)])
        XCTAssertEqual(counters.acceptedMarked, 1)
        XCTAssertEqual(counters.acceptedUnmodified, 1)
    }
}
