import Glibc

/// sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET per state change
/// (`READY=1`, `STATUS=...`, `WATCHDOG=1`, `RELOADING=1`, `STOPPING=1`; `FDSTORE=1` with the
/// descriptors as SCM_RIGHTS, see `FileDescriptorStore`). A no-op when the
/// daemon was not started by systemd with `Type=notify`.
public final class SystemdNotifier: @unchecked Sendable {
    private let socketPath: String?
    private let fd: Int32
    /// Half the unit's WatchdogSec, or nil when no watchdog is configured.
    public let watchdogInterval: Duration?

    public init(environment: [String: String]) {
        let path = environment["NOTIFY_SOCKET"].flatMap { $0.isEmpty ? nil : $0 }
        socketPath = path
        fd = path == nil ? -1 : socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        // WATCHDOG_PID, when set, must name us; WATCHDOG_USEC is the unit's WatchdogSec.
        if let usec = environment["WATCHDOG_USEC"].flatMap(UInt64.init), usec > 0,
            environment["WATCHDOG_PID"].flatMap(Int32.init).map({ $0 == getpid() }) ?? true
        {
            watchdogInterval = .microseconds(Int64(usec / 2))
        } else {
            watchdogInterval = nil
        }
    }

    deinit { if fd >= 0 { close(fd) } }

    public var isActive: Bool { fd >= 0 }

    /// Sends `state` (newline-separated `KEY=value` lines). Returns false if it could not.
    @discardableResult
    public func notify(_ state: String, descriptors: [Int32] = []) -> Bool {
        guard let socketPath, fd >= 0 else { return false }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var pathBytes = Array(socketPath.utf8)
        // A leading '@' names an abstract socket: its first byte is NUL on the wire.
        if pathBytes.first == UInt8(ascii: "@") { pathBytes[0] = 0 }
        let length = withUnsafeMutableBytes(of: &address.sun_path) { sunPath -> Int in
            guard pathBytes.count < sunPath.count else { return -1 }
            sunPath.copyBytes(from: pathBytes)
            return pathBytes.count
        }
        guard length >= 0 else { return false }
        let addressLength = socklen_t(MemoryLayout<sa_family_t>.size + length)
        var bytes = Array(state.utf8)
        guard !descriptors.isEmpty else {
            let sent = withUnsafePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, bytes, bytes.count, Int32(MSG_NOSIGNAL), $0, addressLength)
                }
            }
            return sent == bytes.count
        }
        // sd_pid_notify_with_fds: the descriptors ride along as one SCM_RIGHTS message.
        let headerLength = MemoryLayout<cmsghdr>.size
        let dataLength = descriptors.count * MemoryLayout<Int32>.size
        let control = UnsafeMutableRawBufferPointer.allocate(byteCount: headerLength + (dataLength + 7) & ~7, alignment: 8)
        defer { control.deallocate() }
        control.initializeMemory(as: UInt8.self, repeating: 0)
        let header = control.baseAddress!.assumingMemoryBound(to: cmsghdr.self)
        header.pointee.cmsg_len = headerLength + dataLength
        header.pointee.cmsg_level = SOL_SOCKET
        header.pointee.cmsg_type = Int32(SCM_RIGHTS)
        for (index, descriptor) in descriptors.enumerated() {
            control.storeBytes(of: descriptor, toByteOffset: headerLength + index * 4, as: Int32.self)
        }
        let sent = withUnsafeMutablePointer(to: &address) { pointer in
            bytes.withUnsafeMutableBytes { payload in
                var vector = iovec(iov_base: payload.baseAddress, iov_len: payload.count)
                return withUnsafeMutablePointer(to: &vector) { vectorPointer in
                    var message = msghdr()
                    message.msg_name = UnsafeMutableRawPointer(pointer)
                    message.msg_namelen = addressLength
                    message.msg_iov = vectorPointer
                    message.msg_iovlen = 1
                    message.msg_control = control.baseAddress
                    message.msg_controllen = control.count
                    return sendmsg(fd, &message, Int32(MSG_NOSIGNAL))
                }
            }
        }
        return sent == bytes.count
    }

    public func ready(status: String) { notify("READY=1\nSTATUS=\(status)") }
    public func status(_ text: String) { notify("STATUS=\(text)") }
    public func watchdog() { notify("WATCHDOG=1") }
    public func stopping() { notify("STOPPING=1") }

    /// Reload start, per systemd 253+'s protocol (harmless on older ones, which ignore it).
    public func reloading() {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        notify("RELOADING=1\nMONOTONIC_USEC=\(UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1000)")
    }
}
