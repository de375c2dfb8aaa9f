import Glibc
import SystemCalls

/// Reads and writes the saved flow table. Writes go to a temporary file that is synced and
/// renamed over the old one, so a crash mid-write leaves the previous state, never half a file.
public struct StateFile: Sendable {
    public let path: String

    public init(path: String) { self.path = path }

    public enum Failure: Error, CustomStringConvertible {
        case missing
        case system(String, Int32)
        case tooLarge(Int)

        public var description: String {
            switch self {
            case .missing: "no state file"
            case .system(let what, let code): "\(what): \(String(cString: strerror(code)))"
            case .tooLarge(let size): "state file of \(size) bytes is larger than any table this daemon saves"
            }
        }
    }

    public func read(limit: Int) throws(Failure) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw errno == ENOENT ? .missing : .system("open \(path)", errno) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .system("stat \(path)", errno) }
        guard info.st_size <= limit else { throw .tooLarge(Int(info.st_size)) }
        var bytes = [UInt8](repeating: 0, count: Int(info.st_size))
        var offset = 0
        while offset < bytes.count {
            let count = retryingInterrupts { bytes[offset...].withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) } }
            guard count > 0 else { throw .system("read \(path)", count < 0 ? errno : EIO) }
            offset += count
        }
        return bytes
    }

    public func write(_ bytes: [UInt8]) throws(Failure) {
        let directory = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
        if !directory.isEmpty { mkdir(directory, 0o750) }
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .system("open \(temporary)", errno) }
        var offset = 0
        while offset < bytes.count {
            let count = retryingInterrupts { bytes[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) } }
            guard count > 0 else {
                let code = errno
                close(fd)
                unlink(temporary)
                throw .system("write \(temporary)", code)
            }
            offset += count
        }
        guard fsync(fd) == 0, close(fd) == 0 else { throw .system("sync \(temporary)", errno) }
        guard rename(temporary, path) == 0 else { throw .system("rename to \(path)", errno) }
    }

    /// Moves an unreadable state file aside (kept for inspection) so the next start is clean.
    public func quarantine() -> String {
        let aside = path + ".corrupt"
        rename(path, aside)
        return aside
    }

    public func remove() { unlink(path) }
}
