import Glibc

/// The live flow table's file: every shard's slab of `FlowSlot`s in one `MAP_SHARED` mapping of
/// a file on tmpfs, so the flows outlive the process (a crash, SIGKILL, a watchdog or OOM kill)
/// and the next daemon of the same boot adopts them.
///
/// Layout (native byte order: the file never leaves the machine, or even the boot):
///
///     0    8   magic "NFQRTABL"
///     8    4   layout version (`layoutVersion`)
///     12   4   slot stride (96)
///     16   8   slot layout signature (every FlowSlot field's offset and size)
///     24   16  boot id (/proc/sys/kernel/random/boot_id): expiry times are CLOCK_MONOTONIC seconds
///     40   4   shard count
///     44   4   slots per shard
///     48   8   offset of the control blocks (128 bytes per shard: at 0 the dirty slot,
///              UInt32.max when none; at 32 the undo copy, the dirty slot's last whole bytes)
///     56   8   offset of shard 0's slots
///     64   8   bytes from one shard's slots to the next's
///     72   8   file length
///     ... zero up to `headerLength`
///
/// Only the slots and the dirty words are shared: indexes, free lists and counters stay in
/// private memory and are rebuilt from the slots when a table is adopted. Adoption never writes
/// the old file: it reads the flow of every occupied slot (for each shard's dirty slot, the
/// undo copy: its last whole version) and re-inserts them (`FlowTable.restore`) into a new
/// table in a new file. See FlowSlab for the write protocol and docs/reliability.md.
public final class SharedFlowFile: @unchecked Sendable {
    public static let magic: [UInt8] = Array("NFQRTABL".utf8)
    public static let layoutVersion: UInt32 = 1
    static let headerLength = 4096
    static let controlLength = FlowSlab.controlLength

    /// Where one shard's slots and dirty word live in the mapping.
    struct ShardRegion {
        let slots: UnsafeMutableRawPointer
        let control: UnsafeMutableRawPointer
    }

    public private(set) var path: String
    let shardCount: Int
    let slabCapacity: Int
    private let base: UnsafeMutableRawPointer
    private let length: Int
    /// Kept open with an exclusive flock: a second daemon cannot take this table over while
    /// this one lives, and the lock goes with the process, however it dies.
    private let fd: Int32
    private let slotsOffset: Int
    private let shardStride: Int

    /// Bytes of the file beyond the slots themselves (header, control blocks, alignment).
    public var overheadBytes: Int { length - shardCount * slabCapacity * MemoryLayout<FlowSlot>.stride }

    /// Creates a new zero-filled table file at `path` (replacing any file there), mode 0600,
    /// sized for `configuration`'s shards, and maps it shared.
    public static func create(
        path: String, configuration: FlowTableConfiguration, bootID: UInt128
    ) throws(SharedFlowFileError) -> SharedFlowFile {
        let layout = FlowTable.shardLayout(for: configuration)
        return try create(path: path, shardCount: layout.shards, slabCapacity: layout.slabCapacity, bootID: bootID)
    }

    static func create(path: String, shardCount: Int, slabCapacity: Int, bootID: UInt128) throws(SharedFlowFileError) -> SharedFlowFile {
        let stride = MemoryLayout<FlowSlot>.stride
        let controlsOffset = headerLength
        let slotsOffset = roundUp(controlsOffset + shardCount * controlLength, to: 4096)
        let shardStride = roundUp(slabCapacity * stride, to: 64)
        let length = slotsOffset + shardCount * shardStride
        unlink(path)
        let fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .system("create \(path)", errno) }
        var handedOver = false
        defer { if !handedOver { close(fd) } }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let code = errno
            unlink(path)
            throw .system("lock \(path)", code)
        }
        // fchmod: the umask must not decide who may write the flows a restart will trust.
        guard fchmod(fd, 0o600) == 0 else {
            let code = errno
            unlink(path)
            throw .system("chmod \(path)", code)
        }
        guard ftruncate(fd, off_t(length)) == 0 else {
            let code = errno
            unlink(path)
            throw .system("size \(path)", code)
        }
        // MAP_POPULATE: every page of the table now, not a tmpfs page fault per new slab page
        // during a burst of new flows (a fresh daemon lost 12-21 % of a 100k flows/s burst).
        let mapped = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0)
        guard let mapped, mapped != MAP_FAILED else {
            let code = errno
            unlink(path)
            throw .system("map \(path)", code)
        }
        let file = SharedFlowFile(
            path: path, shardCount: shardCount, slabCapacity: slabCapacity, base: mapped, length: length,
            slotsOffset: slotsOffset, shardStride: shardStride, fd: fd)
        handedOver = true
        let header = mapped
        header.storeBytes(of: UInt32(layoutVersion), toByteOffset: 8, as: UInt32.self)
        header.storeBytes(of: UInt32(stride), toByteOffset: 12, as: UInt32.self)
        header.storeBytes(of: slotSignature, toByteOffset: 16, as: UInt64.self)
        header.storeBytes(of: UInt64(truncatingIfNeeded: bootID >> 64), toByteOffset: 24, as: UInt64.self)
        header.storeBytes(of: UInt64(truncatingIfNeeded: bootID), toByteOffset: 32, as: UInt64.self)
        header.storeBytes(of: UInt32(shardCount), toByteOffset: 40, as: UInt32.self)
        header.storeBytes(of: UInt32(slabCapacity), toByteOffset: 44, as: UInt32.self)
        header.storeBytes(of: UInt64(controlsOffset), toByteOffset: 48, as: UInt64.self)
        header.storeBytes(of: UInt64(slotsOffset), toByteOffset: 56, as: UInt64.self)
        header.storeBytes(of: UInt64(shardStride), toByteOffset: 64, as: UInt64.self)
        header.storeBytes(of: UInt64(length), toByteOffset: 72, as: UInt64.self)
        for shard in 0..<shardCount {
            (mapped + controlsOffset + shard * controlLength).storeBytes(of: FlowSlab.clean, as: UInt32.self)
        }
        // The magic last: a file cut short while being set up is never taken for a table.
        for (index, byte) in magic.enumerated() { header.storeBytes(of: byte, toByteOffset: index, as: UInt8.self) }
        return file
    }

    private init(
        path: String, shardCount: Int, slabCapacity: Int, base: UnsafeMutableRawPointer, length: Int,
        slotsOffset: Int, shardStride: Int, fd: Int32
    ) {
        self.fd = fd
        self.path = path
        self.shardCount = shardCount
        self.slabCapacity = slabCapacity
        self.base = base
        self.length = length
        self.slotsOffset = slotsOffset
        self.shardStride = shardStride
    }

    deinit {
        munmap(base, length)
        close(fd)
    }

    func region(_ shard: Int) -> ShardRegion {
        precondition(shard >= 0 && shard < shardCount)
        return ShardRegion(
            slots: base + slotsOffset + shard * shardStride,
            control: base + Self.headerLength + shard * Self.controlLength)
    }

    /// Where `slot` of `shard` starts in the file.
    func byteOffset(shard: Int, slot: Int) -> Int { slotsOffset + shard * shardStride + slot * MemoryLayout<FlowSlot>.stride }

    /// The mapped bytes as they are now (tests: a crash's view of the file).
    func copyBytes() -> [UInt8] {
        [UInt8](UnsafeRawBufferPointer(start: base, count: length))
    }

    /// Renames the file (the new table taking the canonical name once it is adopted).
    public func rename(to newPath: String) throws(SharedFlowFileError) {
        guard Glibc.rename(path, newPath) == 0 else { throw .system("rename \(path) to \(newPath)", errno) }
        path = newPath
    }

    /// Deletes the file (a stop for good); the mapping stays valid until the table is gone.
    public func removeFile() { unlink(path) }

    private static func roundUp(_ value: Int, to multiple: Int) -> Int { (value + multiple - 1) / multiple * multiple }

    // MARK: Adoption

    /// The flows of the table file at `path`, or why it cannot be trusted. The file must be a
    /// regular file owned by this process's user with no access for group or others
    /// (a table someone else could have written is never believed), of this boot and layout.
    public static func adopt(path: String, bootID: UInt128) throws(SharedFlowFileError) -> AdoptedTable {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw errno == ENOENT ? .missing : .system("open \(path)", errno) }
        defer { close(fd) }
        guard flock(fd, LOCK_SH | LOCK_NB) == 0 else { throw errno == EWOULDBLOCK ? .inUse : .system("lock \(path)", errno) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .system("stat \(path)", errno) }
        guard info.st_mode & S_IFMT == S_IFREG else { throw .unsafe("not a regular file") }
        guard info.st_uid == geteuid() else { throw .unsafe("owned by uid \(info.st_uid), not \(geteuid())") }
        guard info.st_mode & 0o077 == 0 else { throw .unsafe("mode \(String(info.st_mode & 0o777, radix: 8)): open to group or others") }
        let length = Int(info.st_size)
        guard length >= headerLength else { throw .truncated(length: length) }
        let mapped = mmap(nil, length, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let mapped, mapped != MAP_FAILED else { throw .system("map \(path)", errno) }
        defer { munmap(mapped, length) }
        return try records(in: UnsafeRawBufferPointer(start: mapped, count: length), bootID: bootID)
    }

    /// What adoption found in a table's bytes.
    public struct AdoptedTable: Sendable {
        public var records: [FlowRecord]
        /// Slots a shard was writing when the process died, taken from their undo copies.
        public var dirtySlots: Int
    }

    /// Decodes a table's bytes: every occupied slot, each shard's dirty one from its undo copy. Any field out of
    /// range (a header that disagrees with itself, a dirty word beyond the slab, an occupied slot
    /// with an unknown protocol, state or flag) condemns the whole file: it is not one we wrote.
    static func records(in bytes: UnsafeRawBufferPointer, bootID: UInt128) throws(SharedFlowFileError) -> AdoptedTable {
        guard bytes.count >= headerLength else { throw .truncated(length: bytes.count) }
        guard bytes.starts(with: magic) else { throw .badMagic }
        func u32(_ offset: Int) -> UInt32 { bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self) }
        func u64(_ offset: Int) -> UInt64 { bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self) }
        let version = u32(8)
        guard version == layoutVersion else { throw .unsupportedLayout("layout version \(version), this daemon reads \(layoutVersion)") }
        let stride = MemoryLayout<FlowSlot>.stride
        guard u32(12) == stride, u64(16) == slotSignature else { throw .unsupportedLayout("flow slot layout differs from this daemon's") }
        guard UInt128(u64(24)) << 64 | UInt128(u64(32)) == bootID else { throw .otherBoot }
        let shards = Int(u32(40))
        let capacity = Int(u32(44))
        let controls = u64(48)
        let slots = u64(56)
        let shardStride = u64(64)
        let length = u64(72)
        guard length == UInt64(bytes.count) else { throw .lengthMismatch(expected: Int(clamping: length), actual: bytes.count) }
        guard (1...4096).contains(shards), (1...FlowTableConfiguration.maximumLimit).contains(capacity),
            controls >= UInt64(headerLength), controls + UInt64(shards * controlLength) <= slots,
            shardStride >= UInt64(capacity * stride),
            slots + UInt64(shards) * shardStride <= length
        else { throw .unsupportedLayout("header geometry is inconsistent") }

        var records: [FlowRecord] = []
        var dirtySlots = 0
        for shard in 0..<shards {
            let control = Int(controls) + shard * controlLength
            let dirty = u32(control)
            guard dirty == FlowSlab.clean || Int(dirty) < capacity else {
                throw .invalidSlot(shard: shard, slot: Int(dirty), reason: "dirty word beyond the slab")
            }
            let start = Int(slots) + shard * Int(shardStride)
            for slot in 0..<capacity {
                var offset = start + slot * stride
                if UInt32(slot) == dirty {
                    dirtySlots += 1
                    offset = control + FlowSlab.undoOffset
                }
                let occupied = bytes[offset + FlowSlotFields.isOccupied]
                guard occupied != 0 else { continue }
                guard occupied == 1 else { throw .invalidSlot(shard: shard, slot: slot, reason: "occupancy byte \(occupied)") }
                do throws(SlotDecodingError) {
                    records.append(try FlowSlotFields.record(at: offset, in: bytes))
                } catch {
                    throw .invalidSlot(shard: shard, slot: slot, reason: error.reason)
                }
            }
        }
        return AdoptedTable(records: records, dirtySlots: dirtySlots)
    }

    /// Every field's offset and the enums' cases (stored as case indexes) folded together: a
    /// changed `FlowSlot`, `TransportProtocol` or `FlowState` changes it.
    static let slotSignature: UInt64 = {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        let enums = TransportProtocol.allCases.map { Int($0.rawValue) } + FlowState.allCases.map { Int($0.rawValue) }
        for value in FlowSlotFields.offsets + [MemoryLayout<FlowSlot>.stride, MemoryLayout<IPAddress>.size] + enums {
            hash = (hash ^ UInt64(value)) &* 0x100_0000_01b3
        }
        return hash
    }()
}

struct SlotDecodingError: Error { let reason: String }

/// Reads a `FlowSlot` from raw bytes field by field, so bytes that are no valid slot (an unknown
/// enum value) are refused instead of being loaded as one.
enum FlowSlotFields {
    static let client = MemoryLayout<FlowSlot>.offset(of: \.client)!
    static let originalDestination = MemoryLayout<FlowSlot>.offset(of: \.originalDestination)!
    static let replySource = MemoryLayout<FlowSlot>.offset(of: \.replySource)!
    static let originalBytes = MemoryLayout<FlowSlot>.offset(of: \.originalBytes)!
    static let replyBytes = MemoryLayout<FlowSlot>.offset(of: \.replyBytes)!
    static let originalPackets = MemoryLayout<FlowSlot>.offset(of: \.originalPackets)!
    static let replyPackets = MemoryLayout<FlowSlot>.offset(of: \.replyPackets)!
    static let expires = MemoryLayout<FlowSlot>.offset(of: \.expires)!
    static let created = MemoryLayout<FlowSlot>.offset(of: \.created)!
    static let clientSequenceEnd = MemoryLayout<FlowSlot>.offset(of: \.clientSequenceEnd)!
    static let clientPort = MemoryLayout<FlowSlot>.offset(of: \.clientPort)!
    static let originalDestinationPort = MemoryLayout<FlowSlot>.offset(of: \.originalDestinationPort)!
    static let replySourcePort = MemoryLayout<FlowSlot>.offset(of: \.replySourcePort)!
    static let proto = MemoryLayout<FlowSlot>.offset(of: \.proto)!
    static let state = MemoryLayout<FlowSlot>.offset(of: \.state)!
    static let flags = MemoryLayout<FlowSlot>.offset(of: \.flags)!
    static let isOccupied = MemoryLayout<FlowSlot>.offset(of: \.isOccupied)!

    static var offsets: [Int] {
        [
            client, originalDestination, replySource, originalBytes, replyBytes, originalPackets, replyPackets, expires,
            created, clientSequenceEnd, clientPort, originalDestinationPort, replySourcePort, proto, state, flags, isOccupied,
        ]
    }

    /// Every `FlowSlotFlags` bit (kernel-nat mode's `kernelConfirmed` included; adoption keeps
    /// only what a `FlowRecord` holds, and the start-up resync confirms the rest again).
    static let knownFlags: UInt8 = 0x3f

    static func record(at offset: Int, in bytes: UnsafeRawBufferPointer) throws(SlotDecodingError) -> FlowRecord {
        func load<T: FixedWidthInteger>(_ field: Int, _: T.Type) -> T { bytes.loadUnaligned(fromByteOffset: offset + field, as: T.self) }
        func address(_ field: Int) -> IPAddress {
            bytes.loadUnaligned(fromByteOffset: offset + field, as: IPAddress.self)
        }
        let protoValue = bytes[offset + Self.proto]
        let stateValue = bytes[offset + Self.state]
        let flagValue = bytes[offset + Self.flags]
        // An enum is stored as its case's index (declaration order), not its raw value.
        let protocols = TransportProtocol.allCases
        let states = FlowState.allCases
        guard Int(protoValue) < protocols.count else { throw SlotDecodingError(reason: "unknown protocol tag \(protoValue)") }
        guard Int(stateValue) < states.count else { throw SlotDecodingError(reason: "unknown state tag \(stateValue)") }
        let transport = protocols[Int(protoValue)]
        let flowState = states[Int(stateValue)]
        guard flagValue & ~knownFlags == 0 else { throw SlotDecodingError(reason: "unknown flag bits \(flagValue)") }
        let slotFlags = FlowSlotFlags(rawValue: flagValue)
        let record = FlowRecord(
            proto: transport, client: Endpoint(address(client), load(clientPort, UInt16.self)),
            originalDestination: Endpoint(address(originalDestination), load(originalDestinationPort, UInt16.self)),
            redirectTarget: slotFlags.contains(.redirected)
                ? Endpoint(address(replySource), load(replySourcePort, UInt16.self)) : nil,
            state: flowState, seenReply: slotFlags.contains(.seenReply), assured: slotFlags.contains(.assured),
            created: load(created, UInt32.self), expires: load(expires, UInt32.self),
            originalPackets: load(originalPackets, UInt32.self), originalBytes: load(originalBytes, UInt64.self),
            replyPackets: load(replyPackets, UInt32.self), replyBytes: load(replyBytes, UInt64.self))
        if let problem = record.inconsistency { throw SlotDecodingError(reason: problem) }
        return record
    }
}

public enum SharedFlowFileError: Error, Hashable, Sendable, CustomStringConvertible {
    case missing
    /// Another live process holds the table (its lock): never take over a running daemon's flows.
    case inUse
    case system(String, Int32)
    case unsafe(String)
    case truncated(length: Int)
    case badMagic
    case unsupportedLayout(String)
    case otherBoot
    case lengthMismatch(expected: Int, actual: Int)
    case invalidSlot(shard: Int, slot: Int, reason: String)

    public var description: String {
        switch self {
        case .missing: "no live table file"
        case .inUse: "live table file is in use by another running daemon"
        case .system(let what, let code): "\(what): \(String(cString: strerror(code)))"
        case .unsafe(let why): "live table file is not trusted (\(why))"
        case .truncated(let length): "live table file is truncated (\(length) bytes)"
        case .badMagic: "not a live table file (bad magic)"
        case .unsupportedLayout(let why): "live table file has another layout (\(why))"
        case .otherBoot: "live table file is stale (written during another boot)"
        case .lengthMismatch(let expected, let actual): "live table file is \(actual) bytes, its header says \(expected)"
        case .invalidSlot(let shard, let slot, let reason): "live table file is corrupt (shard \(shard) slot \(slot): \(reason))"
        }
    }
}
