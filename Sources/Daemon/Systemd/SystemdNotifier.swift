import Glibc
import SystemCalls

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
        let bytes = Array(state.utf8)
        // A leading '@' names an abstract socket; the descriptors (sd_pid_notify_with_fds) ride
        // along as one SCM_RIGHTS message.
        let sent = UnixSocketAddress.withAddress(path: socketPath, abstractNames: true) { address, length in
            bytes.withUnsafeBytes {
                UnixSocketAddress.send(fd, $0, descriptors: descriptors, to: address, addressLength: length, flags: Int32(MSG_NOSIGNAL))
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
