import Kernel

/// Asks systemd which job is running for a unit, through `systemctl list-jobs` (no D-Bus
/// library needed; systemctl talks to PID 1 over its private socket as root).
public enum SystemdJobs {
    /// The type of the unit's job (`stop`, `restart`, `start`, ...), or nil when it has none
    /// or systemd cannot be asked (not running as PID 1, systemctl missing).
    public static func pendingJobType(unit: String) -> String? {
        guard let systemctl = try? ProgramRunner.locate("systemctl"),
            let outcome = try? ProgramRunner.run(systemctl, ["list-jobs", "--no-legend", "--no-pager", "--full", unit]),
            outcome.status == 0
        else { return nil }
        return jobType(unit: unit, listing: outcome.output)
    }

    /// `systemctl is-active UNIT`: active, activating, failed, inactive, ...; nil when systemd
    /// cannot be asked.
    public static func activeState(unit: String) -> String? {
        guard let systemctl = try? ProgramRunner.locate("systemctl"),
            let outcome = try? ProgramRunner.run(systemctl, ["is-active", unit])
        else { return nil }
        let state = outcome.output.split(separator: "\n").first.map(String.init) ?? ""
        return state.isEmpty || state.contains(" ") ? nil : state
    }

    /// Parses `systemctl list-jobs --no-legend` lines: `JOB UNIT TYPE STATE`.
    public static func jobType(unit: String, listing: String) -> String? {
        for line in listing.split(separator: "\n") {
            let columns = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if columns.count >= 4, columns[1] == unit { return String(columns[2]) }
        }
        return nil
    }
}
