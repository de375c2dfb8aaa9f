import CSystemCalls
import Foundation
import SystemCalls
import XCTest

@testable import Kernel

/// A throwaway network namespace for root tests. Work happens on a dedicated thread that
/// setns()es into it (namespace membership is per thread); programs spawned from that thread
/// inherit it. `withNamespace` always deletes the namespace, failures included.
final class NetworkNamespace {
    let name: String

    private init(name: String) { self.name = name }

    static func withNamespace<T>(_ body: (NetworkNamespace) throws -> T) throws -> T {
        var generator = SplitMix64(seed: UInt64(UInt32(truncatingIfNeeded: getpid())) << 32 | UInt64(UInt32(truncatingIfNeeded: time(nil))))
        let namespace = NetworkNamespace(name: "nfqr-kt-\(String(generator.next() & 0xffff_ffff, radix: 16))")
        try namespace.host(["ip", "netns", "add", namespace.name])
        defer { _ = try? ProgramRunner.run(try ProgramRunner.locate("ip"), ["netns", "delete", namespace.name]) }
        return try body(namespace)
    }

    /// Runs a command on the calling thread (in whatever namespace that thread is in).
    @discardableResult
    func host(_ command: [String], input: String = "") throws -> String {
        let outcome = try ProgramRunner.run(try ProgramRunner.locate(command[0]), Array(command.dropFirst()), input: input)
        guard outcome.status == 0 else {
            throw KernelError.programFailed(command: command.joined(separator: " "), status: outcome.status, output: outcome.output)
        }
        return outcome.output
    }

    /// Runs `body` on a new thread inside the namespace and waits for it.
    func run<T>(_ body: @escaping () throws -> T) throws -> T {
        let box = ResultBox<T>()
        let done = DispatchSemaphore(value: 0)
        let path = "/run/netns/\(name)"
        let thread = Thread {
            defer { done.signal() }
            box.result = Result {
                let fd = open(path, O_RDONLY | O_CLOEXEC)
                guard fd >= 0 else { throw KernelError.system(call: "open(\(path))", errno: Errno(rawValue: errno)) }
                defer { close(fd) }
                guard nfqr_enter_network_namespace(fd) == 0 else {
                    throw KernelError.system(call: "setns(\(path))", errno: Errno(rawValue: errno))
                }
                return try body()
            }
        }
        thread.stackSize = 8 << 20
        thread.start()
        done.wait()
        return try box.result!.get()
    }

    /// The inode that identifies the namespace (what /proc/<pid>/ns/net resolves to).
    var inode: UInt64 {
        var info = stat()
        return stat("/run/netns/\(name)", &info) == 0 ? UInt64(info.st_ino) : 0
    }
}

/// SplitMix64, the seeded generator of property tests.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}

private final class ResultBox<T>: @unchecked Sendable {
    var result: Result<T, Error>?
}
