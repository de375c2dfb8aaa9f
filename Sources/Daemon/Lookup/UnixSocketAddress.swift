import Glibc

// sockaddr_un and SCM_RIGHTS plumbing for the lookup service.
//
// Why unsafe: both need C structs filled through raw pointers (sun_path is a fixed C array,
// control messages are laid out with the CMSG_* macros' alignment rules).
enum UnixSocketAddress {
    /// Calls `body` with a sockaddr_un for `path` (the caller checked it fits: < 108 bytes).
    static func withAddress<T>(path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { sunPath in
            let bytes = Array(path.utf8.prefix(sunPath.count - 1))
            sunPath.copyBytes(from: bytes)
            sunPath[bytes.count] = 0
        }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }

    /// Control-message room for 8 descriptors per message; more are cut off by the kernel
    /// (MSG_CTRUNC) and closed by it.
    static let controlLength = 8 * MemoryLayout<Int32>.size + 2 * MemoryLayout<cmsghdr>.size

    /// recvmsg into `data`, handing every descriptor that came as SCM_RIGHTS to `onDescriptor`
    /// (the receiver owns it). `control` (at least `controlLength` bytes) is scratch space.
    /// Returns recvmsg's result; errno is left as recvmsg set it.
    static func receive(_ fd: Int32, into data: UnsafeMutableRawBufferPointer, control controlBytes: UnsafeMutableRawBufferPointer,
                        onDescriptor: (Int32) -> Void) -> Int {
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
}
