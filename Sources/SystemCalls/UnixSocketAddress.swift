import Glibc

// sockaddr_un and SCM_RIGHTS plumbing, for the lookup server and its clients (and the
// service manager's notification socket).
//
// Why unsafe: both need C structs filled through raw pointers (sun_path is a fixed C array,
// control messages are laid out with the CMSG_* macros' alignment rules).
public enum UnixSocketAddress {
    /// The longest path a sockaddr_un holds (sun_path is 108 bytes with its terminating NUL).
    public static let maximumPathLength = MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1

    /// Calls `body` with a sockaddr_un for `path` and its length, or returns nil (without
    /// calling it) when the path does not fit. With `abstractNames`, a leading '@' names an
    /// abstract socket (its first byte is NUL on the wire, and the length covers only the
    /// name, as the service manager's NOTIFY_SOCKET wants); any other path is NUL-terminated.
    public static func withAddress<T>(
        path: String, abstractNames: Bool = false, _ body: (UnsafePointer<sockaddr>, socklen_t) -> T
    ) -> T? {
        var bytes = Array(path.utf8)
        let isAbstract = abstractNames && bytes.first == UInt8(ascii: "@")
        if isAbstract { bytes[0] = 0 }
        guard bytes.count <= maximumPathLength else { return nil }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { sunPath in
            sunPath.copyBytes(from: bytes)
            sunPath[bytes.count] = 0
        }
        let length =
            isAbstract
            ? socklen_t(MemoryLayout<sa_family_t>.size + bytes.count) : socklen_t(MemoryLayout<sockaddr_un>.size)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, length) }
        }
    }

    /// The path `fd` is bound to, read back with getsockname(2): "" for none, "@name" for an
    /// abstract socket (the form `withAddress(path:abstractNames:)` takes); nil when it cannot
    /// be read.
    public static func boundPath(of fd: Int32) -> String? {
        var address = sockaddr_un()
        var length = socklen_t(MemoryLayout<sockaddr_un>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard named == 0 else { return nil }
        let count = max(0, Int(length) - MemoryLayout<sa_family_t>.size)
        var bytes = withUnsafeBytes(of: address.sun_path) { Array($0.prefix(count)) }
        if bytes.first == 0, !bytes.isEmpty {
            bytes[0] = UInt8(ascii: "@")
        } else if let end = bytes.firstIndex(of: 0) {
            bytes = Array(bytes[..<end])
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Control-message room for 8 descriptors per message; more are cut off by the kernel
    /// (MSG_CTRUNC) and closed by it.
    public static let controlLength = 8 * MemoryLayout<Int32>.size + 2 * MemoryLayout<cmsghdr>.size

    /// recvmsg into `data`, handing every descriptor that came as SCM_RIGHTS to `onDescriptor`
    /// (the receiver owns it). `control` (at least `controlLength` bytes) is scratch space.
    /// Returns recvmsg's result; errno is left as recvmsg set it.
    public static func receive(
        _ fd: Int32, into data: UnsafeMutableRawBufferPointer, control controlBytes: UnsafeMutableRawBufferPointer,
        onDescriptor: (Int32) -> Void
    ) -> Int {
        var vector = iovec(iov_base: data.baseAddress, iov_len: data.count)
        return withUnsafeMutablePointer(to: &vector) { vectorPointer in
            var message = msghdr()
            message.msg_iov = vectorPointer
            message.msg_iovlen = 1
            message.msg_control = controlBytes.baseAddress
            message.msg_controllen = controlLength
            let count = recvmsg(fd, &message, Int32(MSG_CMSG_CLOEXEC))
            guard count >= 0 else { return count }
            var offset = 0
            let headerSize = MemoryLayout<cmsghdr>.size
            while offset + headerSize <= message.msg_controllen {
                let header = controlBytes.load(fromByteOffset: offset, as: cmsghdr.self)
                guard header.cmsg_len >= headerSize, offset + Int(header.cmsg_len) <= message.msg_controllen else { break }
                if header.cmsg_level == SOL_SOCKET && header.cmsg_type == SCM_RIGHTS {
                    let descriptors = (Int(header.cmsg_len) - headerSize) / MemoryLayout<Int32>.size
                    for index in 0..<descriptors {
                        onDescriptor(controlBytes.loadUnaligned(fromByteOffset: offset + headerSize + index * 4, as: Int32.self))
                    }
                }
                offset += (Int(header.cmsg_len) + MemoryLayout<Int>.size - 1) & ~(MemoryLayout<Int>.size - 1)
            }
            return count
        }
    }

    /// sendmsg of `data`, with `descriptor` (if any) as one SCM_RIGHTS control message.
    /// Returns sendmsg's result; errno is left as sendmsg set it.
    public static func send(_ fd: Int32, _ data: UnsafeRawBufferPointer, descriptor: Int32?, flags: Int32) -> Int {
        send(fd, data, descriptors: descriptor.map { [$0] } ?? [], to: nil, addressLength: 0, flags: flags)
    }

    /// sendmsg of `data` to `address` (nil: the connected peer), with `descriptors` (if any)
    /// as one SCM_RIGHTS control message, as sd_pid_notify_with_fds sends them. Returns
    /// sendmsg's result; errno is left as sendmsg set it.
    public static func send(
        _ fd: Int32, _ data: UnsafeRawBufferPointer, descriptors: [Int32],
        to address: UnsafePointer<sockaddr>?, addressLength: socklen_t, flags: Int32
    ) -> Int {
        var vector = iovec(iov_base: UnsafeMutableRawPointer(mutating: data.baseAddress), iov_len: data.count)
        return withUnsafeMutablePointer(to: &vector) { vectorPointer in
            var message = msghdr()
            message.msg_name = UnsafeMutableRawPointer(mutating: address)
            message.msg_namelen = address == nil ? 0 : addressLength
            message.msg_iov = vectorPointer
            message.msg_iovlen = 1
            guard !descriptors.isEmpty else { return sendmsg(fd, &message, flags) }
            // One SCM_RIGHTS control message carrying every descriptor, padded to CMSG_SPACE.
            let dataLength = descriptors.count * MemoryLayout<Int32>.size
            let alignment = MemoryLayout<Int>.size
            let controlLength = MemoryLayout<cmsghdr>.size + (dataLength + alignment - 1) & ~(alignment - 1)
            var control = [UInt8](repeating: 0, count: controlLength)
            return control.withUnsafeMutableBytes { controlBytes in
                var header = cmsghdr()
                header.cmsg_len = MemoryLayout<cmsghdr>.size + dataLength
                header.cmsg_level = SOL_SOCKET
                header.cmsg_type = Int32(SCM_RIGHTS)
                controlBytes.storeBytes(of: header, as: cmsghdr.self)
                for (index, descriptor) in descriptors.enumerated() {
                    controlBytes.storeBytes(
                        of: descriptor, toByteOffset: MemoryLayout<cmsghdr>.size + index * MemoryLayout<Int32>.size, as: Int32.self)
                }
                message.msg_control = controlBytes.baseAddress
                message.msg_controllen = controlLength
                return sendmsg(fd, &message, flags)
            }
        }
    }
}
