import CNetfilterQueue
import Glibc
import RedirectCore
import SystemCalls

/// Interface addresses from the kernel over rtnetlink (RTM_GETADDR dumps via libmnl), in
/// the network namespace of the thread that calls it.
public final class RtnetlinkAddressSource: InterfaceAddressSource, @unchecked Sendable {
    public init() {}

    public func addresses() throws(KernelError) -> [InterfaceAddress] {
        let socket = try NetlinkSocket(bus: NETLINK_ROUTE)
        return try Self.dump(on: socket)
    }

    public func makeMonitor() throws(KernelError) -> any InterfaceAddressMonitor {
        try RtnetlinkAddressMonitor()
    }

    /// IPv4 then IPv6, each dump retried when the kernel flags it interrupted.
    static func dump(on socket: NetlinkSocket) throws(KernelError) -> [InterfaceAddress] {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 32 * 1024, alignment: 8)
        defer { buffer.deallocate() }
        var result: [InterfaceAddress] = []
        var sequence: UInt32 = 0
        for family in [AF_INET, AF_INET6] {
            for attempt in 1...5 {
                sequence &+= 1
                var addresses: [InterfaceAddress] = []
                if try dumpOnce(family: UInt8(family), sequence: sequence, socket: socket, buffer: buffer, into: &addresses) {
                    result += addresses
                    break
                }
                if attempt == 5 { throw .unexpectedReply("the address dump kept being interrupted by changes") }
            }
        }
        return result
    }

    /// One dump; false when it was interrupted.
    private static func dumpOnce(
        family: UInt8, sequence: UInt32, socket: NetlinkSocket, buffer: UnsafeMutableRawBufferPointer, into addresses: inout [InterfaceAddress]
    ) throws(KernelError) -> Bool {
        let request = buffer.baseAddress!.assumingMemoryBound(to: CChar.self)
        let header = mnl_nlmsg_put_header(request)!
        header.pointee.nlmsg_type = UInt16(RTM_GETADDR)
        header.pointee.nlmsg_flags = UInt16(NLM_F_REQUEST | NLM_F_DUMP)
        header.pointee.nlmsg_seq = sequence
        let message = mnl_nlmsg_put_extra_header(header, MemoryLayout<ifaddrmsg>.size)!
        message.assumingMemoryBound(to: ifaddrmsg.self).pointee.ifa_family = family
        try socket.send(UnsafeRawBufferPointer(start: buffer.baseAddress, count: Int(header.pointee.nlmsg_len)), label: "sendto(RTM_GETADDR)")
        while true {
            guard let result = try socket.receive(into: buffer, timeoutMilliseconds: 5000) else {
                throw .unexpectedReply("RTM_GETADDR dump did not finish within 5 s")
            }
            guard case .completed(let length) = result else {
                throw .system(call: "recv(RTM_GETADDR dump)", errno: .noBufferSpace)
            }
            switch try AddressMessages.readDump(datagram: UnsafeRawBufferPointer(rebasing: buffer[..<length]), sequence: sequence, into: &addresses) {
            case .more: continue
            case .done: return true
            case .interrupted:
                // Read the rest of the interrupted dump so it does not mix with the next one.
                while let more = try socket.receive(into: buffer, timeoutMilliseconds: 1000), case .completed(let length) = more,
                    try AddressMessages.readDump(datagram: UnsafeRawBufferPointer(rebasing: buffer[..<length]), sequence: sequence, into: &addresses)
                        == .more
                {}
                return false
            }
        }
    }
}

/// Watches RTNLGRP_IPV4_IFADDR and RTNLGRP_IPV6_IFADDR and answers each change with a full
/// dump (on a second socket, so dump replies and notifications never interleave).
final class RtnetlinkAddressMonitor: InterfaceAddressMonitor, @unchecked Sendable {
    private let notifications: NetlinkSocket
    private let dumps: NetlinkSocket
    private let wakeUp: WakeUpChannel
    private let buffer: UnsafeMutableRawBufferPointer
    private var delivered = false
    private var stopped = false

    init() throws(KernelError) {
        notifications = try NetlinkSocket(bus: NETLINK_ROUTE, groups: UInt32(RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR))
        dumps = try NetlinkSocket(bus: NETLINK_ROUTE)
        wakeUp = try kernelCall { () throws(SystemCallError) in try WakeUpChannel() }
        buffer = .allocate(byteCount: 32 * 1024, alignment: 8)
    }

    deinit { buffer.deallocate() }

    func stop() { wakeUp.signal() }

    func nextSnapshot() throws(KernelError) -> [InterfaceAddress]? {
        if stopped { return nil }
        if !delivered {
            delivered = true
            return try RtnetlinkAddressSource.dump(on: dumps)
        }
        while true {
            guard let first = try notifications.receive(into: buffer, timeoutMilliseconds: -1, wakeUp: wakeUp) else {
                stopped = true
                return nil
            }
            // ENOBUFS: notifications were lost, so something may have changed.
            var changed = isChange(first)
            // Take every notification already waiting, so a burst costs one dump.
            while let more = try notifications.receive(into: buffer, timeoutMilliseconds: 0) {
                changed = changed || isChange(more)
            }
            if changed { return try RtnetlinkAddressSource.dump(on: dumps) }
        }
    }

    private func isChange(_ result: SyscallResult<Int>) -> Bool {
        switch result {
        case .completed(let length): AddressMessages.announcesChange(UnsafeRawBufferPointer(rebasing: buffer[..<length]))
        case .noBufferSpace, .wouldBlock: true
        }
    }
}
