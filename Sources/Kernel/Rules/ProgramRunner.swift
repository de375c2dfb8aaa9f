import CSystemCalls
import Glibc
import SystemCalls

/// Runs a program with posix_spawn from the calling thread (so it inherits that thread's
/// network namespace), feeding it `input` and collecting stdout and stderr together.
public enum ProgramRunner {
    public struct Outcome: Sendable {
        public var status: Int32
        public var output: String
    }

    /// The directories searched after $PATH: iptables lives in /usr/sbin, which a non-login
    /// PATH may lack.
    static let fallbackSearchPath = "/usr/local/sbin:/usr/sbin:/sbin:/usr/local/bin:/usr/bin:/bin"

    /// $PATH then the fallback, each directory once (the error message lists them).
    static func searchPath() -> String {
        let path = getenv("PATH").map { String(cString: $0) } ?? ""
        var seen = Set<Substring>()
        let directories = (path + ":" + fallbackSearchPath).split(separator: ":").filter { seen.insert($0).inserted }
        return directories.joined(separator: ":")
    }

    /// The absolute path of an executable called `name`.
    public static func locate(_ name: String) throws(KernelError) -> String {
        let searched = searchPath()
        for directory in searched.split(separator: ":") where !directory.isEmpty {
            let candidate = "\(directory)/\(name)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        throw .programNotFound(name: name, searchPath: searched)
    }

    public static func run(_ path: String, _ arguments: [String], input: String = "") throws(KernelError) -> Outcome {
        let commandLine = ([path] + arguments).joined(separator: " ")
        var toChild: [CInt] = [-1, -1]
        var fromChild: [CInt] = [-1, -1]
        _ = try syscallCompleting("pipe") { nfqr_pipe_cloexec(&toChild) }
        defer { for fd in toChild where fd >= 0 { close(fd) } }
        _ = try syscallCompleting("pipe") { nfqr_pipe_cloexec(&fromChild) }
        defer { for fd in fromChild where fd >= 0 { close(fd) } }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, toChild[0], 0)
        posix_spawn_file_actions_adddup2(&actions, fromChild[1], 1)
        posix_spawn_file_actions_adddup2(&actions, fromChild[1], 2)

        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        // The daemon holds its lifecycle signals blocked (LifecycleSignals): the child gets an
        // empty mask and default actions, so iptables-restore stops on SIGTERM like any program.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        var allSignals = sigset_t()
        sigemptyset(&noSignals)
        sigfillset(&allSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        posix_spawnattr_setsigdefault(&attributes, &allSignals)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let spawned = posix_spawn(&pid, path, &actions, &attributes, argv, environ)
        guard spawned == 0 else { throw .system(call: "posix_spawn(\(path))", errno: Errno(rawValue: spawned)) }
        close(toChild[0])
        toChild[0] = -1
        close(fromChild[1])
        fromChild[1] = -1

        let output = try exchange(input: Array(input.utf8), writeTo: &toChild[1], readFrom: fromChild[0])
        var status: CInt = 0
        _ = try syscallCompleting("waitpid(\(commandLine))") { waitpid(pid, &status, 0) }
        // WIFEXITED / WEXITSTATUS; a signal death reads as 128 + signal, as shells report it.
        let exitStatus = status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return Outcome(status: exitStatus, output: String(decoding: output, as: UTF8.self))
    }

    /// Writes `input` and reads output at the same time, so neither side can fill a pipe and stall.
    private static func exchange(input: [UInt8], writeTo inputFD: inout CInt, readFrom outputFD: CInt) throws(KernelError) -> [UInt8] {
        var output: [UInt8] = []
        var written = 0
        if input.isEmpty {
            close(inputFD)
            inputFD = -1
        }
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            var fds = [pollfd(fd: outputFD, events: Int16(POLLIN), revents: 0), pollfd(fd: inputFD, events: Int16(POLLOUT), revents: 0)]
            let count = inputFD >= 0 ? 2 : 1
            _ = try syscallCompleting("poll") { poll(&fds, nfds_t(count), -1) }
            if count == 2, fds[1].revents != 0 {
                let fd = inputFD
                do {
                    let sent = try SystemCalls.syscall("write(program input)") {
                        input[written...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                    }
                    if case .completed(let count) = sent { written += count }
                } catch {
                    written = input.count  // EPIPE: the program stopped reading; its status will say why
                }
                if written == input.count {
                    close(inputFD)
                    inputFD = -1
                }
            }
            if fds[0].revents != 0 {
                let outcome = try syscall("read(program output)") {
                    chunk.withUnsafeMutableBytes { read(outputFD, $0.baseAddress, $0.count) }
                }
                if case .completed(let received) = outcome {
                    if received == 0 { return output }
                    output += chunk[0..<received]
                }
            }
        }
    }
}
