import Glibc
import SeededRandom
import XCTest

@testable import RedirectCore

/// The live table file (`SharedFlowFile`) as a crash leaves it: the process may die between any
/// two stores, so the file is captured at every boundary of the dirty-slot protocol (dirty word
/// set, before the slot's first store; after its last; after the dirty word is cleared) and at
/// the instants in between: the slot torn (a random mix of its old and new bytes) while the
/// dirty word names it, and the undo copy torn while the dirty word is clear. Every capture is
/// adopted as the next daemon would; the adopted flows must be exactly the last whole version
/// of every flow (nothing half-written, nothing lost), and a table rebuilt from them must be
/// consistent.
final class LiveTableCrashTests: XCTestCase {
    private var directory = ""
    private let bootID: UInt128 = 0x1234_5678_9abc_def0_0fed_cba9_8765_4321

    override func setUpWithError() throws {
        var template = Array("/tmp/nfqr-live-XXXXXX".utf8CString)
        directory = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)) }
    }

    override func tearDown() {
        #if DEBUG
            FlowSlab.writeHook = nil
        #endif
        if let entries = try? FileManager.default.contentsOfDirectory(atPath: directory) {
            for entry in entries { unlink(directory + "/" + entry) }
        }
        rmdir(directory)
    }

    private let timeouts = FlowTimeouts(
        synSent: 20, synReceived: 10, established: 60, finWait: 20, closeWait: 10, lastAck: 5,
        timeWait: 20, close: 3, udpUnreplied: 5, udpReplied: 15)

    private func makeTable(limit: Int, shards: Int, seed: UInt64, path: String) throws -> FlowTable {
        let configuration = FlowTableConfiguration(
            limit: limit, shardCount: shards, timeouts: timeouts, seed: seed, tombstoneCapacity: 8)
        let file = try SharedFlowFile.create(path: path, configuration: configuration, bootID: bootID)
        return try FlowTable(configuration: configuration, sharedFile: file)
    }

    private func adopt(_ bytes: [UInt8]) throws -> SharedFlowFile.AdoptedTable {
        try bytes.withUnsafeBytes { buffer throws(SharedFlowFileError) in try SharedFlowFile.records(in: buffer, bootID: bootID) }
    }

    // MARK: Whole tables

    func testAnAdoptedTableAnswersLikeTheOldOne() throws {
        let path = directory + "/flows.table"
        var table: FlowTable? = try makeTable(limit: 4096, shards: 16, seed: 1, path: path)
        var expected: [FlowRecord] = []
        for i in 0..<2000 {
            let v6 = i % 2 == 1
            let client: Endpoint = v6 ? Endpoint(IPAddress(high: 0x2001_0db8_0000_0000, low: UInt64(i)), 40000) : Fixture.client(i)
            let proto: TransportProtocol = i % 3 == 0 ? .udp : .tcp
            let tuple = FlowTuple(proto: proto, source: client, destination: v6 ? Fixture.server6 : Fixture.server)
            let target: Endpoint = v6 ? Fixture.proxy6 : Fixture.proxy
            let opening: TCPFlags = proto == .tcp ? .syn : []
            let answer: TCPFlags = proto == .tcp ? [.syn, .ack] : []
            table!.original(tuple, opening, now: 100, redirectTo: target)
            table!.reply(FlowTuple(proto: proto, source: target, destination: client), answer, now: 100)
            if proto == .tcp { table!.original(tuple, .ack, now: 101, redirectTo: target) }
        }
        expected = table!.records(now: 101)
        XCTAssertEqual(expected.count, 2000)
        // While the table lives, its file is locked: no second daemon takes it over.
        XCTAssertThrowsError(try SharedFlowFile.adopt(path: path, bootID: bootID)) { error in
            XCTAssertEqual(error as? SharedFlowFileError, .inUse)
        }
        table = nil  // the process dies: the file stays, the lock goes

        let adopted = try SharedFlowFile.adopt(path: path, bootID: bootID)
        XCTAssertEqual(Set(adopted.records), Set(expected))
        XCTAssertEqual(adopted.dirtySlots, 0)
        let next = try makeTable(limit: 4096, shards: 16, seed: 2, path: path + ".new")
        XCTAssertEqual(next.restore(adopted.records, now: 102), 2000)
        XCTAssertEqual(next.invariantViolations(), [])
        for record in expected {
            XCTAssertEqual(
                next.lookup(proto: record.proto, client: record.client, local: record.redirectTarget!, now: 102),
                .redirected(original: record.originalDestination))
        }
    }

    /// The file adds a header and a control block per shard to the slabs: still <= 128 bytes a flow.
    func testBytesPerFlowAtOneMillionFlowsWithTheLiveTable() throws {
        let limit = 1 << 20
        let table = try makeTable(limit: limit, shards: 64, seed: 3, path: directory + "/flows.table")
        let bytesPerFlow = Double(table.storageBytes) / Double(limit)
        var info = stat()
        XCTAssertEqual(stat(directory + "/flows.table", &info), 0)
        print("live table: file \(info.st_size) bytes, storage \(table.storageBytes) bytes for \(limit) flows = \(bytesPerFlow) bytes/flow")
        XCTAssertLessThanOrEqual(bytesPerFlow, 128)
        XCTAssertEqual(info.st_mode & 0o777, 0o600)
    }

    func testATableOthersCouldWriteOrFromAnotherBootIsRefused() throws {
        let path = directory + "/flows.table"
        do { _ = try makeTable(limit: 1024, shards: 1, seed: 1, path: path) }
        XCTAssertNoThrow(try SharedFlowFile.adopt(path: path, bootID: bootID))
        XCTAssertThrowsError(try SharedFlowFile.adopt(path: path, bootID: bootID + 1)) { error in
            XCTAssertEqual(error as? SharedFlowFileError, .otherBoot)
        }
        chmod(path, 0o620)
        XCTAssertThrowsError(try SharedFlowFile.adopt(path: path, bootID: bootID)) { error in
            guard case .unsafe = error as? SharedFlowFileError else { return XCTFail("\(error)") }
        }
        chmod(path, 0o600)
        var bytes = try XCTUnwrap(FileManager.default.contents(atPath: path)).map { $0 }
        bytes[8] = 2  // layout version 2
        XCTAssertThrowsError(try adopt(bytes)) { error in
            guard case .unsupportedLayout = error as? SharedFlowFileError else { return XCTFail("\(error)") }
        }
        bytes[8] = 1
        bytes[0] = 0
        XCTAssertThrowsError(try adopt(bytes)) { XCTAssertEqual($0 as? SharedFlowFileError, .badMagic) }
        XCTAssertThrowsError(try adopt(Array(bytes.prefix(100)))) { error in
            XCTAssertEqual(error as? SharedFlowFileError, .truncated(length: 100))
        }
    }

    func testAnOccupiedSlotWithAnUnknownStateCondemnsTheFile() throws {
        let path = directory + "/flows.table"
        let table = try makeTable(limit: 1024, shards: 1, seed: 1, path: path)
        table.original(.tcp(Fixture.client, Fixture.server), .syn, now: 10)
        var bytes = table.sharedFile!.copyBytes()
        XCTAssertEqual(try adopt(bytes).records.count, 1)
        let slot0 = Int(bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 56, as: UInt64.self) })
        bytes[slot0 + FlowSlotFields.state] = 200  // no such case
        XCTAssertThrowsError(try adopt(bytes)) { error in
            guard case .invalidSlot(0, 0, _) = error as? SharedFlowFileError else { return XCTFail("\(error)") }
        }
        // The same bytes in the shard's dirty slot are a write cut short: its undo copy (here the
        // free slot it was before the flow was inserted) is taken instead, not fatal.
        bytes.withUnsafeMutableBytes { $0.storeBytes(of: UInt32(0), toByteOffset: SharedFlowFile.headerLength, as: UInt32.self) }
        let adopted = try adopt(bytes)
        XCTAssertEqual(adopted.records, [])
        XCTAssertEqual(adopted.dirtySlots, 1)
    }

    // MARK: A crash at every write boundary

    #if DEBUG
        private struct SlotKey: Hashable {
            let shard: Int
            let slot: UInt32
        }

        func testACrashAtEveryWriteBoundaryAdoptsOnlyWholeFlows() throws {
            var universeClients: [Endpoint] = []
            for i in 0..<40 {
                let host = 10 + i % 7
                let port = UInt16(40000 + i % 6)
                let address =
                    i % 3 == 0
                    ? IPAddress(high: 0x2001_0db8_0000_0000, low: UInt64(host)) : IPAddress(ipv4: 0x0A00_0000 | UInt32(host))
                universeClients.append(Endpoint(address, port))
            }
            let servers = [
                Endpoint(IPAddress(ipv4: 0x5DB8_D822), 80), Endpoint(IPAddress(ipv4: 0x5DB8_D823), 53),
                Endpoint(IPAddress(high: 0x2001_0db8_ffff_0000, low: 0x80), 443),
            ]
            let targets = [Fixture.proxy, Fixture.proxy6]
            let flagChoices: [TCPFlags] = [.syn, .syn, [.syn, .ack], .ack, [.ack, .psh], [.fin, .ack], .rst, [.rst, .ack], []]

            var captures = 0
            var torn = 0
            var adoptedFlows = 0
            var dirtyLeftOut = 0
            for seed in UInt64(1)...3 {
                let path = directory + "/flows-\(seed).table"
                // 512 flows in 2 shards; 220 clients x servers overflow it, so early drop runs too.
                let table = try makeTable(limit: 512, shards: 2, seed: seed, path: path)
                let file = table.sharedFile!
                let regions = (0..<file.shardCount).map { file.region($0) }
                let stride = MemoryLayout<FlowSlot>.stride
                var committed: [SlotKey: FlowRecord] = [:]
                var before: [UInt8] = []
                var random = SplitMix64(seed: seed)
                var failures = 0

                func decodeLive(_ key: SlotKey) -> FlowRecord? {
                    let slot = regions[key.shard].slots + Int(key.slot) * stride
                    let bytes = UnsafeRawBufferPointer(start: slot, count: stride)
                    guard bytes[FlowSlotFields.isOccupied] == 1 else { return nil }
                    return try? FlowSlotFields.record(at: 0, in: bytes)
                }
                func check(_ bytes: [UInt8], _ what: String) {
                    captures += 1
                    let expected = committed
                    do {
                        let adopted = try adopt(bytes)
                        if Set(adopted.records) != Set(expected.values) || adopted.records.count != expected.count {
                            failures += 1
                            if failures < 5 { XCTFail("seed \(seed) \(what): adopted \(adopted.records.count), expected \(expected.count)") }
                        }
                        adoptedFlows += adopted.records.count
                        dirtyLeftOut += adopted.dirtySlots
                        let next = Fixture.table(limit: 512, shards: 2, timeouts: timeouts, seed: seed &+ 99)
                        next.restore(adopted.records, now: 0)
                        let problems = next.invariantViolations()
                        if !problems.isEmpty {
                            failures += 1
                            XCTFail("seed \(seed) \(what): \(problems.prefix(3))")
                        }
                    } catch {
                        failures += 1
                        if failures < 5 { XCTFail("seed \(seed) \(what): \(error)") }
                    }
                }

                var previousUndo: [Int: [UInt8]] = [:]  // per shard: the undo copy before this write
                FlowSlab.writeHook = { phase, control, slot in
                    guard let shard = regions.firstIndex(where: { UnsafeRawPointer($0.control) == control }) else { return }
                    let key = SlotKey(shard: shard, slot: slot)
                    let undo = SharedFlowFile.headerLength + shard * SharedFlowFile.controlLength + FlowSlab.undoOffset
                    switch phase {
                    case .begun:
                        // Undo copy and dirty word stored, no byte of the slot changed yet.
                        before = file.copyBytes()
                        check(before, "before writing \(key)")
                        // The instant before: the dirty word still clear, the undo copy half overwritten.
                        if let previousUndo = previousUndo[shard] {
                            var mixed = before
                            mixed.withUnsafeMutableBytes {
                                $0.storeBytes(of: FlowSlab.clean, toByteOffset: undo - FlowSlab.undoOffset, as: UInt32.self)
                            }
                            for byte in undo..<undo + stride where random.next() % 2 == 0 { mixed[byte] = previousUndo[byte - undo] }
                            torn += 1
                            check(mixed, "undo copy torn before writing \(key)")
                        }
                    case .written:
                        // Every byte of the slot stored, dirty word not yet cleared...
                        let after = file.copyBytes()
                        check(after, "after writing \(key)")
                        // ...and the instant in between: any subset of the slot's stores landed.
                        let offset = file.byteOffset(shard: shard, slot: Int(slot))
                        if before.count == after.count, before[offset..<offset + stride] != after[offset..<offset + stride] {
                            var mixed = after
                            for _ in 0..<3 {
                                for byte in offset..<offset + stride where random.next() % 2 == 0 { mixed[byte] = before[byte] }
                                torn += 1
                                check(mixed, "slot torn while writing \(key)")
                            }
                        }
                        previousUndo[shard] = Array(after[undo..<undo + stride])
                    case .ended:
                        committed[key] = decodeLive(key)
                        check(file.copyBytes(), "after committing \(key)")
                    }
                }

                var now: UInt32 = 1000
                for _ in 0..<2000 {
                    let client = universeClients[Int(random.next() % UInt64(universeClients.count))]
                    let server = servers[Int(random.next() % UInt64(servers.count))]
                    let target = targets[Int(random.next() % 2)]
                    let proto: TransportProtocol = random.next() % 4 == 0 ? .udp : .tcp
                    let flags = flagChoices[Int(random.next() % UInt64(flagChoices.count))]
                    switch random.next() % 100 {
                    case 0..<45:
                        table.handleOriginal(FlowTuple(proto: proto, source: client, destination: server), tcpFlags: flags, length: 100, now: now) {
                            _ in
                            random.next() % 5 == 0 ? .trackOnly : .redirect(to: target)
                        }
                    case 45..<80:
                        table.reply(FlowTuple(proto: proto, source: target, destination: client), flags, now: now)
                    case 80..<90:
                        _ = table.lookup(proto: proto, client: client, local: target, now: now)
                    case 90..<95:
                        table.sweep(now: now, budget: 64)
                    default:
                        now += UInt32(random.next() % 8)
                    }
                    if failures > 0 { break }
                }
                FlowSlab.writeHook = nil
                XCTAssertEqual(table.invariantViolations(), [])
                XCTAssertEqual(failures, 0)
            }
            print(
                "live table crash test: \(captures) captures (\(torn) with a torn slot or undo copy), \(adoptedFlows) flows adopted, \(dirtyLeftOut) from undo copies"
            )
            XCTAssertGreaterThan(torn, 1000)
        }
    #endif
}
