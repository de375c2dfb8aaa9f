import CNetfilterQueue
import Glibc
import SystemCalls

/// A netlink socket opened and bound with libmnl, for set-up requests (queue
/// configuration, address dumps) and as the descriptor the datapath reads.
final class NetlinkSocket {
    private let handle: OpaquePointer
    let descriptor: CInt
    let portID: UInt32

    /// Opens a socket of `bus` (NETLINK_NETFILTER, NETLINK_ROUTE) subscribed to `groups`
    /// (a bitmask of RTMGRP_* values; 0 for none).
    init(bus: CInt, groups: UInt32 = 0) throws(KernelError) {
        guard let handle = mnl_socket_open2(bus, CInt(SOCK_CLOEXEC.rawValue)) else {
            throw .system(call: "socket(AF_NETLINK, \(bus))", errno: .current)
        }
        guard mnl_socket_bind(handle, groups, pid_t(MNL_SOCKET_AUTOPID)) == 0 else {
            let error = Errno.current
            mnl_socket_close(handle)
            throw .system(call: "bind(AF_NETLINK)", errno: error)
        }
        self.handle = handle
        self.descriptor = mnl_socket_get_fd(handle)
        self.portID = mnl_socket_get_portid(handle)
    }

    /// Takes over an open netlink socket (one a previous process bound and the service
    /// manager kept): its port id is read back from the kernel. Closes `descriptor` on failure.
    init(adopting descriptor: CInt) throws(KernelError) {
        guard let handle = mnl_socket_fdopen(descriptor) else {
            let error = Errno.current
            close(descriptor)
            throw .system(call: "getsockname(adopted netlink socket)", errno: error)
        }
        self.handle = handle
        self.descriptor = descriptor
        self.portID = mnl_socket_get_portid(handle)
    }

    deinit { mnl_socket_close(handle) }

    /// Sends one datagram (which may hold several messages) to the kernel.
    func send(_ bytes: UnsafeRawBufferPointer, label: @autoclosure () -> String) throws(KernelError) {
        _ = try syscallCompleting(label()) { mnl_socket_sendto(handle, bytes.baseAddress, bytes.count) }
    }

    /// Receives one datagram, waiting at most `timeoutMilliseconds` for it.
    /// Returns nil on timeout; ENOBUFS (lost notifications) is reported as `.noBufferSpace`.
    func receive(into buffer: UnsafeMutableRawBufferPointer, timeoutMilliseconds: CInt, wakeUp: WakeUpChannel? = nil)
        throws(KernelError) -> SyscallResult<Int>?
    {
        while true {
            switch try syscall("recv(netlink)", { recv(descriptor, buffer.baseAddress, buffer.count, CInt(MSG_DONTWAIT)) }) {
            case .completed(let count): return .completed(count)
            case .noBufferSpace: return .noBufferSpace
            case .wouldBlock:
                switch try kernelCall({ () throws(SystemCallError) in
                    try ReadinessWait.wait(for: descriptor, wakeUp: wakeUp, timeoutMilliseconds: timeoutMilliseconds)
                }) {
                case .readable: continue
                case .wokenUp, .timedOut: return nil
                }
            }
        }
    }
}
