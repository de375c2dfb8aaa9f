import Glibc

/// What a system call under the errno policy came to.
///
/// The one errno policy of this module (modelled on SwiftNIO's `syscall(blocking:)`):
/// EINTR is retried; EAGAIN and ENOBUFS are ordinary outcomes the caller counts or waits on;
/// anything else is thrown as `KernelError.system`.
public enum SyscallResult<Value> {
    case completed(Value)
    /// EAGAIN / EWOULDBLOCK: nothing to do without blocking.
    case wouldBlock
    /// ENOBUFS: on a netlink socket, the kernel dropped messages because the receive buffer was full.
    case noBufferSpace
}

/// Runs `body` (a system call returning -1 and setting errno on failure) under the errno policy.
@inline(__always)
func syscall<T: FixedWidthInteger>(_ name: @autoclosure () -> String, _ body: () -> T) throws(KernelError) -> SyscallResult<T> {
    while true {
        let result = body()
        if result != -1 { return .completed(result) }
        let code = errno
        switch code {
        case EINTR: continue
        case EAGAIN: return .wouldBlock
        case ENOBUFS: return .noBufferSpace
        default: throw .system(call: name(), errno: Errno(rawValue: code))
        }
    }
}

/// For set-up calls, where EAGAIN and ENOBUFS are failures like any other.
@inline(__always)
func syscallCompleting<T: FixedWidthInteger>(_ name: @autoclosure () -> String, _ body: () -> T) throws(KernelError) -> T {
    switch try syscall(name(), body) {
    case .completed(let value): return value
    case .wouldBlock: throw .system(call: name(), errno: .wouldBlock)
    case .noBufferSpace: throw .system(call: name(), errno: .noBufferSpace)
    }
}
