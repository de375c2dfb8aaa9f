import CNetlinkAttributes
import RedirectCore
import SystemCalls

/// Reads rtnetlink address messages (RTM_NEWADDR in dumps and notifications).
enum AddressMessages {
    static let newAddress: UInt16 = 20  // RTM_NEWADDR
    static let deleteAddress: UInt16 = 21  // RTM_DELADDR
    static let dumpInterrupted: UInt16 = 0x10  // NLM_F_DUMP_INTR
    private static let tentative: UInt32 = 0x40  // IFA_F_TENTATIVE
    private static let dadFailed: UInt32 = 0x08  // IFA_F_DADFAILED
    private static let secondary: UInt32 = 0x01  // IFA_F_SECONDARY (IPv4; 0x01 is IFA_F_TEMPORARY for IPv6)

    /// Where a dump stands after one datagram.
    enum DumpProgress: Equatable {
        case more
        case done
        /// The address list changed while the kernel was dumping it: start over.
        case interrupted
    }

    /// Appends the addresses of one dump datagram. Messages that do not parse are skipped.
    static func readDump(datagram: UnsafeRawBufferPointer, sequence: UInt32, into addresses: inout [InterfaceAddress]) throws(KernelError)
        -> DumpProgress
    {
        var progress = DumpProgress.more
        for message in NetlinkMessages(datagram) where message.sequence == sequence {
            if message.flags & dumpInterrupted != 0 { progress = .interrupted }
            switch Int(message.type) {
            case NLMSG_DONE_TYPE:
                return progress == .interrupted ? .interrupted : .done
            case NLMSG_ERROR_TYPE:
                if let code = message.errorCode, code != 0 {
                    throw .netlink(request: "RTM_GETADDR dump", errno: Errno(rawValue: -code))
                }
            default:
                if message.type == newAddress, let address = interfaceAddress(message) { addresses.append(address) }
            }
        }
        return progress
    }

    /// True when the datagram announces an address added or removed.
    static func announcesChange(_ datagram: UnsafeRawBufferPointer) -> Bool {
        NetlinkMessages(datagram).contains { $0.type == newAddress || $0.type == deleteAddress }
    }

    static func interfaceAddress(_ message: NetlinkMessage) -> InterfaceAddress? {
        guard let base = message.payload.baseAddress, !message.isTruncated else { return nil }
        var fields = nfqr_interface_address()
        guard nfqr_parse_interface_address(base, message.payload.count, &fields) == NFQR_PARSE_OK, fields.has_address != 0 else {
            return nil
        }
        let isIPv4 = fields.family == 2
        let address = withUnsafeBytes(of: fields.address) {
            IPAddress(reading: $0, at: 0, family: isIPv4 ? .ipv4 : .ipv6)
        }
        return InterfaceAddress(
            interfaceIndex: fields.interface_index, address: address, prefixLength: fields.prefix_length,
            isTentative: fields.flags & (tentative | dadFailed) != 0,
            isSecondary: isIPv4 && fields.flags & secondary != 0)
    }
}
