// Errno is part of KernelError's public face: importers of Kernel get it without importing SystemCalls.
@_exported import struct SystemCalls.Errno

/// Everything the kernel boundary can fail with. Errors are for set-up and for faults the
/// caller must act on; per-packet trouble (ENOBUFS, netlink errors, unparsable messages) is
/// counted in `PacketQueueCounters` instead.
public enum KernelError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A system call failed; `call` names it and what it was for.
    case system(call: String, errno: Errno)
    /// The kernel answered a netlink request with an error.
    case netlink(request: String, errno: Errno)
    /// The kernel sent something this code does not understand.
    case unexpectedReply(String)
    /// A configuration value is out of range; the text says which and why.
    case invalidConfiguration(String)
    /// A program (iptables-restore, ...) is not installed.
    case programNotFound(name: String, searchPath: String)
    /// A program ran and failed; `output` holds what it wrote to stderr (and stdout).
    case programFailed(command: String, status: Int32, output: String)

    public var description: String {
        switch self {
        case .system(let call, let errno): "\(call) failed: \(errno)"
        case .netlink(let request, let errno): "the kernel refused \(request): \(errno)"
        case .unexpectedReply(let what): "unexpected netlink reply: \(what)"
        case .invalidConfiguration(let what): what
        case .programNotFound(let name, let searchPath):
            "'\(name)' was not found in \(searchPath); install Debian's iptables package"
        case .programFailed(let command, let status, let output):
            "'\(command)' failed with status \(status): \(output.trimmingTrailingNewlines)"
        }
    }
}

extension String {
    var trimmingTrailingNewlines: Substring {
        var text = self[...]
        while let last = text.last, last.isNewline { text = text.dropLast() }
        return text
    }
}
