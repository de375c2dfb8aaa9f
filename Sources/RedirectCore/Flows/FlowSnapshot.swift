/// The binary form of a saved flow table: the daemon writes it on stop and reads it on start.
///
/// Layout (all integers big-endian):
///
///     0   8   magic "NFQRFLOW"
///     8   2   format version (1)
///     10  2   record length (90)
///     12  4   record count
///     16  4   saved at (seconds on the table's monotonic clock)
///     20  16  clock domain (the boot the clock belongs to, e.g. /proc/sys/kernel/random/boot_id)
///     36  90 x count  records
///     end 4   CRC-32C of everything before it
///
/// Record: protocol, state, flags (1 redirected, 2 seen reply, 4 assured), a zero byte;
/// client, original destination and redirect target (16-byte address, 2-byte port each; the
/// target is zero when not redirected); created, expires, original packets (4 each), original
/// bytes (8), reply packets (4), reply bytes (8).
///
/// Times are only meaningful on the clock that produced them, so a snapshot from another boot
/// (different clock domain) or from the future (the clock went backwards) is rejected as stale.
public enum FlowSnapshot {
    public static let magic: [UInt8] = Array("NFQRFLOW".utf8)
    public static let version: UInt16 = 1
    static let headerLength = 36
    static let recordLength = 90
    static let checksumLength = 4

    public static func encode(_ records: [FlowRecord], savedAt: UInt32, clockDomain: UInt128) -> [UInt8] {
        var writer = SnapshotWriter(capacity: headerLength + records.count * recordLength + checksumLength)
        writer.bytes += magic
        writer.put(version)
        writer.put(UInt16(recordLength))
        writer.put(UInt32(truncatingIfNeeded: records.count))
        writer.put(savedAt)
        writer.put(clockDomain)
        for record in records {
            writer.put(record.proto.rawValue)
            writer.put(record.state.rawValue)
            var flags: UInt8 = 0
            if record.redirectTarget != nil { flags |= 1 }
            if record.seenReply { flags |= 2 }
            if record.assured { flags |= 4 }
            writer.put(flags)
            writer.put(UInt8(0))
            writer.put(record.client)
            writer.put(record.originalDestination)
            writer.put(record.redirectTarget ?? Endpoint(IPAddress(high: 0, low: 0), 0))
            writer.put(record.created)
            writer.put(record.expires)
            writer.put(record.originalPackets)
            writer.put(record.originalBytes)
            writer.put(record.replyPackets)
            writer.put(record.replyBytes)
        }
        writer.put(CRC32C.checksum(writer.bytes))
        return writer.bytes
    }

    /// The records of a snapshot, or the first reason it cannot be trusted. `now` and
    /// `clockDomain` are the reader's clock and boot.
    public static func decode(_ bytes: [UInt8], now: UInt32, clockDomain: UInt128) throws(FlowSnapshotError) -> [FlowRecord] {
        guard bytes.count >= headerLength + checksumLength else { throw .truncated(length: bytes.count) }
        guard bytes.starts(with: magic) else { throw .badMagic }
        var reader = SnapshotReader(bytes: bytes, offset: magic.count)
        let version: UInt16 = reader.take()
        guard version == Self.version else { throw .unsupportedVersion(version) }
        var trailer = SnapshotReader(bytes: bytes, offset: bytes.count - checksumLength)
        let stored: UInt32 = trailer.take()
        let computed = CRC32C.checksum(bytes[..<(bytes.count - checksumLength)])
        guard stored == computed else { throw .checksumMismatch(stored: stored, computed: computed) }
        let length: UInt16 = reader.take()
        guard Int(length) == recordLength else { throw .unsupportedRecordLength(length) }
        let count = Int(reader.take() as UInt32)
        let expected = headerLength + count * recordLength + checksumLength
        guard bytes.count == expected else { throw .lengthMismatch(expected: expected, actual: bytes.count) }
        let savedAt: UInt32 = reader.take()
        let domain: UInt128 = reader.take()
        guard domain == clockDomain else { throw .otherClockDomain }
        guard savedAt <= now else { throw .savedInFuture(savedAt: savedAt, now: now) }

        var records: [FlowRecord] = []
        records.reserveCapacity(count)
        for index in 0..<count {
            let protoValue: UInt8 = reader.take()
            let stateValue: UInt8 = reader.take()
            let flags: UInt8 = reader.take()
            let reserved: UInt8 = reader.take()
            guard let proto = TransportProtocol(rawValue: protoValue) else {
                throw .invalidRecord(index: index, reason: "unknown protocol \(protoValue)")
            }
            guard let state = FlowState(rawValue: stateValue) else {
                throw .invalidRecord(index: index, reason: "unknown state \(stateValue)")
            }
            guard flags & ~7 == 0 && reserved == 0 else {
                throw .invalidRecord(index: index, reason: "unknown flag bits")
            }
            let client: Endpoint = reader.take()
            let originalDestination: Endpoint = reader.take()
            let target: Endpoint = reader.take()
            let record = FlowRecord(
                proto: proto, client: client, originalDestination: originalDestination,
                redirectTarget: flags & 1 != 0 ? target : nil, state: state,
                seenReply: flags & 2 != 0, assured: flags & 4 != 0,
                created: reader.take(), expires: reader.take(),
                originalPackets: reader.take(), originalBytes: reader.take(),
                replyPackets: reader.take(), replyBytes: reader.take())
            if let problem = record.inconsistency { throw .invalidRecord(index: index, reason: problem) }
            records.append(record)
        }
        return records
    }
}

public enum FlowSnapshotError: Error, Hashable, Sendable, CustomStringConvertible {
    case truncated(length: Int)
    case badMagic
    case unsupportedVersion(UInt16)
    case checksumMismatch(stored: UInt32, computed: UInt32)
    case unsupportedRecordLength(UInt16)
    case lengthMismatch(expected: Int, actual: Int)
    /// Written during another boot: its times mean nothing on this clock.
    case otherClockDomain
    /// Written at a time later than now: the clock was reset.
    case savedInFuture(savedAt: UInt32, now: UInt32)
    case invalidRecord(index: Int, reason: String)

    public var description: String {
        switch self {
        case .truncated(let length): "flow snapshot is truncated (\(length) bytes)"
        case .badMagic: "not a flow snapshot (bad magic)"
        case .unsupportedVersion(let version): "flow snapshot version \(version) is not supported"
        case .checksumMismatch(let stored, let computed):
            "flow snapshot is corrupt (checksum \(hex(stored)), computed \(hex(computed)))"
        case .unsupportedRecordLength(let length): "flow snapshot record length \(length) is not supported"
        case .lengthMismatch(let expected, let actual): "flow snapshot is \(actual) bytes, expected \(expected)"
        case .otherClockDomain: "flow snapshot is stale (written during another boot)"
        case .savedInFuture(let savedAt, let now): "flow snapshot is stale (saved at \(savedAt), clock now \(now))"
        case .invalidRecord(let index, let reason): "flow snapshot record \(index) is invalid: \(reason)"
        }
    }

    private func hex(_ value: UInt32) -> String { "0x" + String(value, radix: 16) }
}

private struct SnapshotWriter {
    var bytes: [UInt8] = []

    init(capacity: Int) { bytes.reserveCapacity(capacity) }

    mutating func put<T: FixedWidthInteger>(_ value: T) {
        var bigEndian = value.bigEndian
        withUnsafeBytes(of: &bigEndian) { bytes += $0 }
    }

    mutating func put(_ endpoint: Endpoint) {
        put(endpoint.address.high)
        put(endpoint.address.low)
        put(endpoint.port)
    }
}

/// Reads big-endian fields; the caller has checked the total length first.
private struct SnapshotReader {
    let bytes: [UInt8]
    var offset: Int

    mutating func take<T: FixedWidthInteger>() -> T {
        var value: T = 0
        for _ in 0..<MemoryLayout<T>.size {
            value = value << 8 | T(bytes[offset])
            offset += 1
        }
        return value
    }

    mutating func take() -> Endpoint {
        let high: UInt64 = take()
        let low: UInt64 = take()
        return Endpoint(IPAddress(high: high, low: low), take())
    }
}
