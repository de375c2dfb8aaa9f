import ArgumentParser
import Daemon
import Glibc
import Kernel
import NFQRedirectClient
import RedirectCore

extension RedirectControl {
    /// Day one on a host: is everything in place for the daemon to redirect? Reads only.
    struct DoctorCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "doctor",
            abstract: "Check the host: config, firewall tools, rules, queues, lookup socket, systemd unit.",
            discussion: """
                One line per check: ok, warn or FAIL, then what was found. Exit status 1 when a check \
                failed. Give the same --config (and flags) the daemon runs with. Changes nothing.
                """)

        @OptionGroup var options: RedirectOptions
        @Option(name: .customLong("unit"), help: "The systemd unit to look at.") var unit = "nfq-redirect.service"

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
            findings.append(lookup)
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
