import ArgumentParser
import Daemon
import Glibc
import Kernel
import NFQRedirectClient
import RedirectCore
import SystemCalls

extension RedirectControl {
    /// Day one on a host: is everything in place for the daemon to redirect? Reads only.
    struct DoctorCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "doctor",
            abstract:
                "Check the host: config, firewall tools, rules, queues, forwarding, rp_filter, exclusions, lookup socket, getsockopt hook, systemd unit.",
            discussion: """
                One line per check: ok, warn or FAIL, then what was found and what to fix. Exit status 1 \
                when a check failed. Give the same --config (and flags) the daemon runs with; --user NAME \
                also checks that a proxy running as NAME may use the lookup socket. Changes nothing.
                """)

        @OptionGroup var options: RedirectOptions
        @Option(name: .customLong("unit"), help: "The systemd unit to look at.") var unit = "nfq-redirect.service"
        @Option(
            name: .customLong("user"),
            help: ArgumentHelp("Check that a proxy running as this user (name or uid) may use the lookup socket.", valueName: "name"))
        var user: String?

        func run() throws {
            var findings: [Doctor.Finding] = []
            let configuration: DaemonConfiguration
            do {
                configuration = try options.resolve()
                findings.append(
                    .init(
                        .ok, "config",
                        "\(configuration.redirects.count) redirect\(configuration.redirects.count == 1 ? "" : "s"): \(configuration.redirects.map(\.description).joined(separator: " "))"
                    ))
            } catch {
                findings.append(.init(.fail, "config", error.description))
                configuration = (try? options.resolve(requireRedirects: false)) ?? DaemonConfiguration()
            }
            findings.append(tools())
            let lookup = lookupSocket(configuration.lookup.socketPath)
            let daemonRunning = lookup.level == .ok
            var rulesInPlace = false
            if !configuration.redirects.isEmpty {
                do {
                    let missing = try IptablesRuleInstaller().missing(configuration.ruleSet, orNftTable: !configuration.ruleManagement.manage)
                    rulesInPlace = missing.isEmpty
                    findings.append(Doctor.rules(missing: missing, manage: configuration.ruleManagement.manage, daemonRunning: daemonRunning))
                } catch {
                    findings.append(.init(.fail, "rules", "cannot read them: \(error)"))
                }
            } else {
                rulesInPlace = (try? IptablesRuleInstaller().anyInstalled()) ?? false
            }
            if let kernel = try? NetfilterQueueKernelStatistics.read() {
                findings += Doctor.queues(configuration, kernel: kernel, rulesInPlace: rulesInPlace)
            } else {
                findings.append(
                    .init(
                        .fail, "queues",
                        "no /proc/net/netfilter/nfnetlink_queue: the nfnetlink_queue module is not loaded (no daemon has bound a queue)"))
            }
            if let forwarding = Doctor.forwarding(
                configuration, ipv4: sysctl("/proc/sys/net/ipv4/ip_forward"), ipv6: sysctl("/proc/sys/net/ipv6/conf/all/forwarding"))
            {
                findings.append(forwarding)
            }
            if let reversePath = Doctor.reversePathFilter(configuration, values: reversePathFilterValues()) { findings.append(reversePath) }
            findings.append(Doctor.exclusions(configuration))
            findings.append(lookup)
            if let user { findings.append(socketAccess(user, configuration.lookup)) }
            findings.append(getsockoptHook(configuration, daemonRunning: daemonRunning))
            if let unitFinding = systemdUnit() { findings.append(unitFinding) }
            findings.forEach { print($0) }
            let status = Doctor.exitStatus(findings)
            if status != 0 { throw ExitCode(status) }
        }

        private func tools() -> Doctor.Finding {
            var missing: [String] = []
            for name in ["iptables", "iptables-restore", "iptables-save", "ip6tables", "ip6tables-restore", "ip6tables-save"] {
                if (try? ProgramRunner.locate(name)) == nil { missing.append(name) }
            }
            guard missing.isEmpty else {
                return .init(.fail, "firewall tools", "not found: \(missing.joined(separator: ", ")) (Debian package iptables)")
            }
            let version =
                (try? ProgramRunner.locate("iptables")).flatMap { try? ProgramRunner.run($0, ["--version"]) }?.output
                .split(separator: "\n").first.map(String.init) ?? "iptables"
            return .init(.ok, "firewall tools", version)
        }

        private func lookupSocket(_ path: String) -> Doctor.Finding {
            do {
                let answer = try LookupClient(socketPath: path).request(.version)
                guard answer.hasPrefix("OK ") else { return .init(.fail, "lookup socket", "\(path) answers \(answer)") }
                let served = String(answer.dropFirst(3))
                let same = served.contains(" \(DaemonVersion.current) ")
                return .init(
                    same ? .ok : .warn, "lookup socket",
                    "\(path): \(served)\(same ? "" : " (this nfq-redirect is \(DaemonVersion.current): restart the daemon after an upgrade)")")
            } catch {
                return .init(.fail, "lookup socket", "\(path): \(error)")
            }
        }

        private func sysctl(_ path: String) -> Int? {
            (try? Descriptor.readFile(path)).flatMap { Int(String(decoding: $0, as: UTF8.self).filter { !$0.isWhitespace }) }
        }

        /// net.ipv4.conf.<interface>.rp_filter for every interface, `all` included.
        private func reversePathFilterValues() -> [String: Int] {
            guard let directory = opendir("/proc/sys/net/ipv4/conf") else { return [:] }
            defer { closedir(directory) }
            var values: [String: Int] = [:]
            while let entry = readdir(directory) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
                guard name != ".", name != ".." else { continue }
                if let value = sysctl("/proc/sys/net/ipv4/conf/\(name)/rp_filter") { values[name] = value }
            }
            return values
        }

        private func getsockoptHook(_ configuration: DaemonConfiguration, daemonRunning: Bool) -> Doctor.Finding {
            var attached: Int?
            var why: String?
            if BPFGetsockoptHook.isBuiltIn && configuration.getsockopt.enabled {
                do {
                    attached = try BPFGetsockoptHook.attachedCount(cgroupPath: configuration.getsockopt.cgroup)
                } catch {
                    why = "\(error)"
                }
            }
            return Doctor.getsockoptHook(
                configuration, builtIn: BPFGetsockoptHook.isBuiltIn, attached: attached, why: why, daemonRunning: daemonRunning)
        }

        /// The user's ids and groups as the kernel will check them, and the permissions on the way.
        private func socketAccess(_ name: String, _ lookup: DaemonConfiguration.Lookup) -> Doctor.Finding {
            let entry = uid_t(name).flatMap { getpwuid($0) } ?? getpwnam(name)
            guard let entry else { return .init(.fail, "lookup socket for \(name)", "no user named '\(name)' on this host") }
            let account = String(cString: entry.pointee.pw_name)
            let uid = entry.pointee.pw_uid
            let gid = entry.pointee.pw_gid
            var count: Int32 = 64
            var groups = [gid_t](repeating: 0, count: Int(count))
            if getgrouplist(account, gid, &groups, &count) < 0 {
                groups = [gid_t](repeating: 0, count: Int(count))
                _ = getgrouplist(account, gid, &groups, &count)
            }
            groups = Array(groups.prefix(Int(max(0, count))))
            func access(_ path: String) -> Doctor.FileAccess? {
                var info = stat()
                guard stat(path, &info) == 0 else { return nil }
                return Doctor.FileAccess(path: path, uid: info.st_uid, gid: info.st_gid, mode: info.st_mode)
            }
            let parts = lookup.socketPath.split(separator: "/").dropLast()
            let directories = (0...parts.count).compactMap { access("/" + parts.prefix($0).joined(separator: "/")) }
            return Doctor.socketAccess(
                Doctor.Account(name: account, uid: uid, gid: gid, groups: groups), socketPath: lookup.socketPath,
                directories: directories, socket: access(lookup.socketPath), lookup: lookup)
        }

        /// Only where systemd runs as PID 1.
        private func systemdUnit() -> Doctor.Finding? {
            guard access("/run/systemd/system", F_OK) == 0, let state = SystemdJobs.activeState(unit: unit) else { return nil }
            switch state {
            case "active": return .init(.ok, "systemd", "\(unit) active")
            case "failed": return .init(.fail, "systemd", "\(unit) failed: `journalctl -u \(unit)` says why")
            default: return .init(.warn, "systemd", "\(unit) \(state)")
            }
        }
    }
}
