import CSystemCalls
import Glibc

/// Small descriptor helpers used at set-up time (socket options, files, wake-up channels).
///
/// Why unsafe: socket options and poll(2) take C structs by pointer; the file reader reads
/// into a raw chunk it allocates and frees itself.
public enum Descriptor {
    public static func setOption(_ fd: CInt, level: CInt, name: CInt, value: CInt, label: @autoclosure () -> String) throws(SystemCallError) {
        var value = value
        _ = try syscallCompleting(label()) {
            setsockopt(fd, level, name, &value, socklen_t(MemoryLayout<CInt>.size))
        }
    }

    public static func option(_ fd: CInt, level: CInt, name: CInt, label: @autoclosure () -> String) throws(SystemCallError) -> CInt {
        var value: CInt = 0
        var length = socklen_t(MemoryLayout<CInt>.size)
        _ = try syscallCompleting(label()) { getsockopt(fd, level, name, &value, &length) }
        return value
    }

    /// Sets a socket buffer size, trying the privileged `force` option first (it ignores
    /// net.core.rmem_max / wmem_max), then the ordinary one. Returns the size the kernel
    /// reports back (it doubles the request for its own bookkeeping).
    public static func setBufferSize(_ fd: CInt, bytes: Int, force: CInt, plain: CInt, label: String) throws(SystemCallError) -> Int {
        let value = CInt(clamping: bytes)
        do {
            try setOption(fd, level: SOL_SOCKET, name: force, value: value, label: label)
        } catch {
            try setOption(fd, level: SOL_SOCKET, name: plain, value: value, label: label)
        }
        return Int(try option(fd, level: SOL_SOCKET, name: plain, label: label))
    }

    /// Reads a whole (small) file, such as one under /proc.
    public static func readFile(_ path: String) throws(SystemCallError) -> [UInt8] {
        let fd = try syscallCompleting("open(\(path))") { open(path, O_RDONLY | O_CLOEXEC) }
        defer { close(fd) }
        var contents: [UInt8] = []
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 1)
        defer { chunk.deallocate() }
        while true {
            let count = try syscallCompleting("read(\(path))") { read(fd, chunk.baseAddress, chunk.count) }
            if count == 0 { return contents }
            contents.append(contentsOf: chunk[0..<count])
        }
    }
}

/// An eventfd another thread writes to, so a thread blocked in poll(2) or epoll_wait(2)
/// wakes up: the one wake-up channel of the datapath, the address monitor and the lookup server.
public final class WakeUpChannel {
    public let descriptor: CInt

    public init() throws(SystemCallError) {
        descriptor = try syscallCompleting("eventfd") { nfqr_eventfd() }
    }

    deinit { close(descriptor) }

    public func signal() {
        var one: UInt64 = 1
        // A full counter (EAGAIN) still leaves the descriptor readable: nothing to do.
        _ = write(descriptor, &one, MemoryLayout<UInt64>.size)
    }

    /// Clears pending signals.
    public func drain() {
        var value: UInt64 = 0
        _ = read(descriptor, &value, MemoryLayout<UInt64>.size)
    }
}

/// What a wait for a readable descriptor came to.
public enum ReadinessWait {
    case readable
    case wokenUp
    case timedOut

    /// Blocks until `fd` is readable, `wakeUp` is signalled, or `timeoutMilliseconds` pass (-1: no limit).
    public static func wait(for fd: CInt, wakeUp: WakeUpChannel?, timeoutMilliseconds: CInt) throws(SystemCallError) -> ReadinessWait {
        var fds = (
            pollfd(fd: fd, events: Int16(POLLIN), revents: 0),
            pollfd(fd: wakeUp?.descriptor ?? -1, events: Int16(POLLIN), revents: 0)
        )
        let count: nfds_t = wakeUp == nil ? 1 : 2
        let ready = try withUnsafeMutableBytes(of: &fds) { (raw) throws(SystemCallError) -> CInt in
            let pointer = raw.baseAddress!.assumingMemoryBound(to: pollfd.self)
            return try syscallCompleting("poll") { poll(pointer, count, timeoutMilliseconds) }
        }
        if ready == 0 { return .timedOut }
        if let wakeUp, fds.1.revents != 0 {
            wakeUp.drain()
            return .wokenUp
        }
        return .readable
    }
}
