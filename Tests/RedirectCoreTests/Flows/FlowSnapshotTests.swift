import XCTest

@testable import RedirectCore

final class FlowSnapshotTests: XCTestCase {
    private let boot: UInt128 = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210

    /// A table with TCP and UDP, IPv4 and IPv6, redirected and tracked-only flows in several states.
    private func populatedTable() -> FlowTable {
        let table = Fixture.table(limit: 4096, shards: 4)
        table.original(.tcp(Fixture.client6, Fixture.server6), .syn, length: 80, now: 100, redirectTo: Fixture.proxy6)
        table.reply(.tcp(Fixture.proxy6, Fixture.client6), [.syn, .ack], length: 80, now: 101)
        table.original(.tcp(Fixture.client6, Fixture.server6), .ack, length: 72, now: 102, redirectTo: Fixture.proxy6)
        table.original(.tcp(Fixture.client, Fixture.proxy), .syn, now: 103, redirectTo: nil)
        table.original(.udp(Fixture.client(9), Fixture.server), length: 512, now: 104)
        table.reply(.udp(Fixture.proxy, Fixture.client(9)), length: 1400, now: 105)
        for i in 100..<140 { table.original(.tcp(Fixture.client(i), Fixture.server), .syn, now: 106) }
        return table
    }

    private func sorted(_ records: [FlowRecord]) -> [FlowRecord] {
        records.sorted { "\($0)" < "\($1)" }
    }

    func testRoundTripThroughBytesAndRestore() throws {
        let table = populatedTable()
        let records = table.records(now: 110)
        XCTAssertEqual(records.count, 43)
        let bytes = FlowSnapshot.encode(records, savedAt: 110, clockDomain: boot)
        XCTAssertEqual(bytes.count, 36 + 43 * 90 + 4)
        let decoded = try FlowSnapshot.decode(bytes, now: 120, clockDomain: boot)
        XCTAssertEqual(decoded, records)

        let restoredTable = Fixture.table(limit: 4096, shards: 4, seed: 7)  // another key: a new daemon
        XCTAssertEqual(restoredTable.restore(decoded, now: 120), 43)
        XCTAssertEqual(sorted(restoredTable.records(now: 120)), sorted(records))
        XCTAssertEqual(restoredTable.statistics.restored, 43)
        XCTAssertEqual(restoredTable.statistics.created, 0)
        XCTAssertEqual(
            restoredTable.lookup(proto: .tcp, client: Fixture.client6, local: Fixture.proxy6, now: 120),
            .redirected(original: Fixture.server6))
        // The restored flow carries on where it was.
        XCTAssertEqual(restoredTable.reply(.tcp(Fixture.proxy6, Fixture.client6), .ack, now: 121), .rewriteSource(Fixture.server6))
        XCTAssertEqual(restoredTable.record(of: Fixture.client6, now: 121)?.state, .established)
        XCTAssertEqual(restoredTable.invariantViolations(), [])
    }

    func testRestoreSkipsExpiredTakenAndOverLimitRecords() {
        let records = populatedTable().records(now: 110)
        let udpExpiry = records.first { $0.proto == .udp }!.expires
        let table = Fixture.table(limit: 20)
        // Already present: the same flow must not be inserted twice.
        table.original(.tcp(Fixture.client, Fixture.proxy), .syn, now: 103, redirectTo: nil)
        let restored = table.restore(records, now: udpExpiry)
        XCTAssertEqual(restored, 19, "the UDP flow has expired, one was present, then the limit")
        XCTAssertEqual(table.count, 20)
        XCTAssertEqual(table.statistics.destroyedEvicted, 0, "restoring never evicts")
        XCTAssertEqual(table.invariantViolations(), [])
    }

    func testRestoreRejectsInconsistentRecords() {
        var record = populatedTable().records(now: 110)[0]
        record.state = record.proto == .tcp ? .udpReplied : .established
        XCTAssertNotNil(record.inconsistency)
        XCTAssertEqual(Fixture.table().restore([record], now: 110), 0)
    }

    func testEmptySnapshot() throws {
        let bytes = FlowSnapshot.encode([], savedAt: 5, clockDomain: boot)
        XCTAssertEqual(bytes.count, 40)
        XCTAssertEqual(Array(bytes[0..<8]), Array("NFQRFLOW".utf8))
        XCTAssertEqual(try FlowSnapshot.decode(bytes, now: 5, clockDomain: boot), [])
    }

    func testEveryTruncationIsRejected() {
        let bytes = FlowSnapshot.encode(populatedTable().records(now: 110), savedAt: 110, clockDomain: boot)
        for length in 0..<bytes.count {
            XCTAssertThrowsError(try FlowSnapshot.decode(Array(bytes[..<length]), now: 120, clockDomain: boot), "\(length)")
        }
    }

    func testEveryFlippedBitIsRejected() {
        let bytes = FlowSnapshot.encode(Array(populatedTable().records(now: 110).prefix(3)), savedAt: 110, clockDomain: boot)
        for position in 0..<bytes.count {
            for bit in 0..<8 {
                var corrupt = bytes
                corrupt[position] ^= UInt8(1 << bit)
                XCTAssertThrowsError(try FlowSnapshot.decode(corrupt, now: 120, clockDomain: boot), "byte \(position) bit \(bit)")
            }
        }
    }

    func testHeaderErrorsAreSpecific() {
        let good = FlowSnapshot.encode(Array(populatedTable().records(now: 110).prefix(2)), savedAt: 110, clockDomain: boot)
        func error(_ bytes: [UInt8], now: UInt32 = 120, domain: UInt128? = nil) -> FlowSnapshotError? {
            do {
                _ = try FlowSnapshot.decode(bytes, now: now, clockDomain: domain ?? boot)
                return nil
            } catch {
                return error
            }
        }
        XCTAssertEqual(error(Array(good.prefix(10))), .truncated(length: 10))
        var magic = good
        magic[0] = UInt8(ascii: "X")
        XCTAssertEqual(error(magic), .badMagic)
        XCTAssertEqual(error(resealed(good) { $0[9] = 2 }), .unsupportedVersion(2))
        XCTAssertEqual(error(resealed(good) { $0[11] = 91 }), .unsupportedRecordLength(91))
        XCTAssertEqual(error(resealed(good) { $0[15] = 3 }), .lengthMismatch(expected: 36 + 3 * 90 + 4, actual: good.count))
        XCTAssertEqual(error(good, domain: boot + 1), .otherClockDomain)
        XCTAssertEqual(error(good, now: 109), .savedInFuture(savedAt: 110, now: 109))
        XCTAssertEqual(error(resealed(good) { $0[36] = 1 }), .invalidRecord(index: 0, reason: "unknown protocol 1"))
        XCTAssertEqual(error(resealed(good) { $0[36 + 90 + 1] = 0 }), .invalidRecord(index: 1, reason: "unknown state 0"))
        XCTAssertEqual(error(resealed(good) { $0[36 + 2] = 0x80 }), .invalidRecord(index: 0, reason: "unknown flag bits"))
        if case .checksumMismatch = error(good.dropLast() + [good.last! ^ 1]) {} else { XCTFail("checksum") }
        XCTAssertEqual("\(FlowSnapshotError.otherClockDomain)", "flow snapshot is stale (written during another boot)")
    }

    /// Applies `change` and writes a valid checksum, to reach the checks behind the checksum.
    private func resealed(_ bytes: [UInt8], _ change: (inout [UInt8]) -> Void) -> [UInt8] {
        var body = Array(bytes.dropLast(4))
        change(&body)
        let crc = CRC32C.checksum(body)
        return body + [UInt8(crc >> 24), UInt8(crc >> 16 & 0xff), UInt8(crc >> 8 & 0xff), UInt8(crc & 0xff)]
    }

    func testCRC32CKnownAnswer() {
        // RFC 3720 appendix B.4 and the common check value.
        XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xE306_9283)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0, count: 32)), 0x8A91_36AA)
    }
}
