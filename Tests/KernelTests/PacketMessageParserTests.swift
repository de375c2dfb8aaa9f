import SeededRandom
import XCTest

@testable import Kernel

final class PacketMessageParserTests: XCTestCase {
    /// Parses `datagram` into a fresh batch the way the real queue does: bytes in slot 0.
    private func parse(_ datagram: [UInt8], truncated: Bool = false, capacity: Int = 4) -> (PacketBatch, PacketQueueCounters) {
        let batch = PacketBatch(capacity: capacity, slotSize: 4096)
        let slot = batch.slot(0)
        slot.copyBytes(from: datagram)
        var counters = PacketQueueCounters()
        PacketMessageParser.parse(
            datagram: UnsafeMutableRawBufferPointer(rebasing: slot[..<datagram.count]), truncated: truncated, into: batch, counters: &counters)
        return (batch, counters)
    }

    func testAFullPacketMessageYieldsEveryFieldAndAPayloadInsideTheBuffer() {
        let payload: [UInt8] = [0x45, 0, 0, 21, 1, 2, 3, 4, 5]
        let (batch, counters) = parse(Fixture.packetMessage(id: 42, hook: 0, mark: 7, inputInterface: 3, skbInfo: 3, payload: payload))
        XCTAssertEqual(batch.count, 1)
        XCTAssertEqual(counters, PacketQueueCounters())
        let packet = batch[0]
        XCTAssertEqual(packet.id, 42)
        XCTAssertEqual(packet.hardwareProtocol, 0x0800)
        XCTAssertEqual(packet.netfilterHook, .preRouting)
        XCTAssertEqual(packet.mark, 7)
        XCTAssertEqual(packet.inputInterface, 3)
        XCTAssertTrue(packet.checksumNotReady)
        XCTAssertTrue(packet.isGSO)
        XCTAssertEqual(packet.packetLength, payload.count)
        XCTAssertFalse(packet.isTruncated)
        XCTAssertEqual(Array(packet.payload), payload)
        // Zero copy: the payload lies inside the slot, after the 16 + 4 + 12 + 8 + 8 + 8 + 4 header bytes.
        XCTAssertEqual(packet.payload.baseAddress, batch.slot(0).baseAddress! + 60)
        XCTAssertEqual(packet.metadata(direction: .original)?.hook, .preRouting)
        XCTAssertEqual(packet.metadata(direction: .original)?.checksumNotReady, true)
    }

    func testABatchFullOfPacketsAndUnparsedIDsGetsEveryVerdict() throws {
        // Found by FuzzQueueMessages: one datagram of more good and unparsable messages than the
        // batch has slots filled both lists, and the verdict writer (sized for one) trapped.
        var datagram: [UInt8] = []
        for id in UInt32(1)...10 {
            datagram += Fixture.packetMessage(id: id, payload: id % 2 == 0 ? nil : [0x45, 0, 0, 20])
        }
        let (batch, _) = parse(datagram, capacity: 4)
        XCTAssertEqual(batch.count, 4)
        XCTAssertEqual(batch.unparsedCount, 4)
        var counters = PacketQueueCounters()
        var sent: [UInt8] = []
        try VerdictWriter(batchCapacity: 4).write(
            batch: batch, queueNumber: 5, unparsedPolicy: .drop, useBatchVerdict: false, sendLimit: 1 << 20, counters: &counters
        ) { iovecs, _ in
            for vector in iovecs { sent += UnsafeRawBufferPointer(start: vector.iov_base, count: vector.iov_len) }
        }
        let messages = sent.withUnsafeBytes { Array(NetlinkMessages($0)).count }
        XCTAssertEqual(messages, 8, "a verdict for every packet and every unparsed id")
    }

    func testTable() {
        struct Case {
            var name: String
            var datagram: [UInt8]
            var truncated = false
            var packets: Int
            var unparsed: [UInt32]
            var parseErrors: UInt64 = 0
            var netlinkErrors: UInt64 = 0
        }
        let packet = Fixture.packetMessage(id: 9)
        let cases = [
            Case(name: "two packets in one datagram", datagram: packet + Fixture.packetMessage(id: 10), packets: 2, unparsed: []),
            Case(name: "cut short by MSG_TRUNC", datagram: packet, truncated: true, packets: 0, unparsed: [9], parseErrors: 1),
            Case(name: "nlmsg_len past the datagram", datagram: Array(packet.dropLast(4)), packets: 0, unparsed: [9], parseErrors: 1),
            Case(name: "no payload", datagram: Fixture.packetMessage(id: 11, payload: nil), packets: 0, unparsed: [11], parseErrors: 1),
            Case(
                name: "no packet header", datagram: Fixture.message(type: 0x0300, Fixture.nfgen(queue: 5) + Fixture.attribute(10, [1, 2, 3, 4])),
                packets: 0, unparsed: [], parseErrors: 1),
            Case(
                name: "attribute longer than the message",
                datagram: Fixture.message(
                    type: 0x0300, Fixture.nfgen(queue: 5) + Fixture.attribute(1, Fixture.be32(12) + [8, 0, 3]) + Fixture.u16(200) + Fixture.u16(10)),
                packets: 0, unparsed: [12], parseErrors: 1),
            Case(
                name: "mark of the wrong size",
                datagram: Fixture.message(
                    type: 0x0300, Fixture.nfgen(queue: 5) + Fixture.attribute(1, Fixture.be32(13) + [8, 0, 3]) + Fixture.attribute(3, [1, 2])),
                packets: 0, unparsed: [13], parseErrors: 1),
            Case(name: "an error for a rejected verdict", datagram: Fixture.error(-2), packets: 0, unparsed: [], netlinkErrors: 1),
            Case(name: "an acknowledgement", datagram: Fixture.error(0), packets: 0, unparsed: []),
            Case(
                name: "an unknown message type", datagram: Fixture.message(type: 0x0302, Fixture.nfgen(queue: 5)), packets: 0, unparsed: [],
                parseErrors: 1),
            Case(name: "too short for nfgenmsg", datagram: Fixture.message(type: 0x0300, [2, 0]), packets: 0, unparsed: [], parseErrors: 1),
            Case(name: "nlmsg_len below the header", datagram: Fixture.u32(8) + [UInt8](repeating: 0, count: 12), packets: 0, unparsed: []),
            Case(name: "empty", datagram: [], packets: 0, unparsed: []),
            Case(
                name: "more packets than room", datagram: packet + Fixture.packetMessage(id: 10) + Fixture.packetMessage(id: 11),
                packets: 2, unparsed: [11], parseErrors: 1),
        ]
        for test in cases {
            let (batch, counters) = parse(test.datagram, truncated: test.truncated, capacity: 2)
            XCTAssertEqual(batch.count, test.packets, test.name)
            XCTAssertEqual(Array(UnsafeBufferPointer(start: batch.unparsedIDs, count: batch.unparsedCount)), test.unparsed, test.name)
            XCTAssertEqual(counters.parseErrors, test.parseErrors, test.name)
            XCTAssertEqual(counters.netlinkErrors, test.netlinkErrors, test.name)
        }
    }

    func testCapturedLengthMarksATruncatedPacket() {
        let (batch, _) = parse(Fixture.packetMessage(id: 1, capturedLength: 70000, payload: [0x45, 0, 0, 0]))
        XCTAssertEqual(batch[0].packetLength, 70000)
        XCTAssertTrue(batch[0].isTruncated)
    }

    /// Random bytes never crash the parser and never produce a payload outside the datagram.
    func testRandomBytesAreSurvived() {
        var generator = SplitMix64(seed: 0x5eed)
        let valid = Fixture.packetMessage(id: 1, mark: 2, inputInterface: 3, skbInfo: 1, payload: [0x45, 1, 2, 3, 4, 5, 6, 7])
        for _ in 0..<5000 {
            var bytes = valid
            for _ in 0..<Int(generator.next() % 6) {
                bytes[Int(generator.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: generator.next())
            }
            bytes = Array(bytes.prefix(Int(generator.next() % UInt64(bytes.count + 1))))
            let (batch, _) = parse(bytes)
            let slot = batch.slot(0)
            for index in 0..<batch.count {
                let payload = batch[index].payload
                XCTAssertGreaterThanOrEqual(payload.baseAddress!, slot.baseAddress!)
                XCTAssertLessThanOrEqual(payload.baseAddress! + payload.count, slot.baseAddress! + bytes.count)
            }
        }
    }
}
