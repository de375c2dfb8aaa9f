import SystemCalls

/// How full the kernel's conntrack table is, in the network namespace of the calling thread
/// (`/proc/sys/net/netfilter/nf_conntrack_count` and `nf_conntrack_max`).
public struct ConntrackTableUsage: Sendable, Equatable {
    /// Entries now (all of them, not only the daemon's).
    public var count: Int
    /// The table's limit; new flows are dropped past it (after early drops of unassured entries).
    public var limit: Int

    public init(count: Int, limit: Int) {
        self.count = count
        self.limit = limit
    }

    /// Reads both files under `directory`; `KernelError.system` when conntrack is not loaded.
    public static func read(directory: String = "/proc/sys/net/netfilter") throws(KernelError) -> ConntrackTableUsage {
        let count = try value(of: "\(directory)/nf_conntrack_count")
        let limit = try value(of: "\(directory)/nf_conntrack_max")
        return ConntrackTableUsage(count: count, limit: limit)
    }

    /// A sysctl file's contents: decimal digits and a newline.
    static func parse(_ bytes: [UInt8]) -> Int? {
        var text = Substring(decoding: bytes, as: UTF8.self)
        while let last = text.last, last.isWhitespace { text = text.dropLast() }
        guard let value = Int(text), value >= 0 else { return nil }
        return value
    }

    private static func value(of path: String) throws(KernelError) -> Int {
        let bytes = try kernelCall { () throws(SystemCallError) in try Descriptor.readFile(path) }
        guard let value = parse(bytes) else { throw .unexpectedReply("\(path) holds no count: \(String(decoding: bytes.prefix(40), as: UTF8.self))") }
        return value
    }
}
