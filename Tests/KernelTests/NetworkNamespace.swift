import CSystemCalls
import Foundation
import SystemCalls
import XCTest

@testable import Kernel

/// A throwaway network namespace for root tests, made and removed by the test harness
/// (Tests/harness, shape "single": loopback up, no duplicate address detection). Work happens
/// on a dedicated thread that setns()es into it (namespace membership is per thread); programs
/// spawned from that thread inherit it. `withNamespace` always deletes the namespace, failures
/// included.
final class NetworkNamespace {
    let name: String

    private init(name: String) { self.name = name }

    static func withNamespace<T>(_ body: (NetworkNamespace) throws -> T) throws -> T {
        // A tag per call: tests may run in parallel (swift test --parallel).
        let tag = "nfqr-kt-\(String(UInt32.random(in: 0 ... .max), radix: 16))"
        defer { _ = try? ProgramRunner.run("/usr/bin/env", harness(["delete", "--tag", tag])) }
        let created = try ProgramRunner.run("/usr/bin/env", harness(["create", "--tag", tag, "--shape", "single"]))
        let names = created.output.split(separator: "\n").map(String.init).filter { $0.hasPrefix("\(tag)-") }
        guard created.status == 0, names.count == 1 else {
            throw KernelError.programFailed(command: "python3 -m harness.netns create --tag \(tag)", status: created.status, output: created.output)
        }
        return try body(NetworkNamespace(name: names[0]))
    }

    /// `python3 -m harness.netns ARGUMENTS` through env(1): the harness is found through
    /// PYTHONPATH when set (the Makefile exports it), else in this repository's Tests directory.
    private static func harness(_ arguments: [String]) -> [String] {
        let tests = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().path
        let path = ProcessInfo.processInfo.environment["PYTHONPATH"].flatMap { $0.isEmpty ? nil : $0 } ?? tests
        return ["PYTHONPATH=\(path)", "/usr/bin/python3", "-m", "harness.netns"] + arguments
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

private final class ResultBox<T>: @unchecked Sendable {
    var result: Result<T, Error>?
}
