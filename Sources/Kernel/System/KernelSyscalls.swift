import SystemCalls

// The SystemCalls layer's errno policy, its failures as `KernelError.system`: every call in
// this module goes through these (or `kernelCall` for the layer's descriptor helpers).

extension KernelError {
    package init(_ error: SystemCallError) {
        self = .system(call: error.call, errno: error.errno)
    }
}

/// `SystemCalls.syscall`: EINTR retried, EAGAIN and ENOBUFS returned, the rest thrown.
@inline(__always)
func syscall<T: FixedWidthInteger>(_ name: @autoclosure () -> String, _ body: () -> T) throws(KernelError) -> SyscallResult<T> {
    do {
        return try SystemCalls.syscall(name(), body)
    } catch {
        throw KernelError(error)
    }
}

/// `SystemCalls.syscallCompleting`, for set-up calls.
@inline(__always)
func syscallCompleting<T: FixedWidthInteger>(_ name: @autoclosure () -> String, _ body: () -> T) throws(KernelError) -> T {
    do {
        return try SystemCalls.syscallCompleting(name(), body)
    } catch {
        throw KernelError(error)
    }
}

/// Runs one of the layer's helpers (`Descriptor`, `WakeUpChannel`, `ReadinessWait`).
@inline(__always)
package func kernelCall<T>(_ body: () throws(SystemCallError) -> T) throws(KernelError) -> T {
    do {
        return try body()
    } catch {
        throw KernelError(error)
    }
}
