import Glibc

/// A system call that failed under the errno policy: which call (and what for) and its errno.
public struct SystemCallError: Error, Equatable, Sendable, CustomStringConvertible {
    public var call: String
    public var errno: Errno

    public init(call: String, errno: Errno) {
        self.call = call
        self.errno = errno
    }

    public var description: String { "\(call) failed: \(errno)" }
}

/// What a system call under the errno policy came to.
///
/// The one errno policy of every module (modelled on SwiftNIO's `syscall(blocking:)`):
/// EINTR is retried; EAGAIN and ENOBUFS are ordinary outcomes the caller counts or waits on;
/// anything else is thrown as a `SystemCallError`.
public enum SyscallResult<Value> {
    case completed(Value)
    /// EAGAIN / EWOULDBLOCK: nothing to do without blocking (or a socket timeout passed).
    case wouldBlock
    /// ENOBUFS: on a netlink socket, the kernel dropped messages because the receive buffer was full.
    case noBufferSpace
}

/// Runs `body` (a system call returning -1 and setting errno on failure) under the errno policy.
@inlinable @inline(__always)
public func syscall<T: FixedWidthInteger>(
    _ name: @autoclosure () -> String, _ body: () -> T
) throws(SystemCallError) -> SyscallResult<T> {
    while true {
        let result = body()
        if result != -1 { return .completed(result) }
        let code = errno
        switch code {
        case EINTR: continue
        case EAGAIN: return .wouldBlock
        case ENOBUFS: return .noBufferSpace
        default: throw SystemCallError(call: name(), errno: Errno(rawValue: code))
        }
    }
}

/// For set-up calls, where EAGAIN and ENOBUFS are failures like any other.
@inlinable @inline(__always)
public func syscallCompleting<T: FixedWidthInteger>(
    _ name: @autoclosure () -> String, _ body: () -> T
) throws(SystemCallError) -> T {
    switch try syscall(name(), body) {
    case .completed(let value): return value
    case .wouldBlock: throw SystemCallError(call: name(), errno: .wouldBlock)
    case .noBufferSpace: throw SystemCallError(call: name(), errno: .noBufferSpace)
    }
}

/// For calls whose every failure the caller reads from errno itself (reads and writes of a
/// regular file): only EINTR is retried. Returns what `body` last returned.
@inlinable @inline(__always)
public func retryingInterrupts<T: FixedWidthInteger>(_ body: () -> T) -> T {
    while true {
        let result = body()
        if result != -1 || errno != EINTR { return result }
    }
}
