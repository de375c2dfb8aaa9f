/// What `ExecStopPost=` (`nfq-redirect rules --remove --unless-restarting UNIT`) does with the
/// rules the daemon left behind when its unit stopped. Under systemd the daemon always exits
/// keeping its rules; this is the one place that knows whether systemd will start it again:
///
/// | systemd's job for the unit    | `$SERVICE_RESULT` | rules   | why                                   |
/// | ----------------------------- | ----------------- | ------- | ------------------------------------- |
/// | restart, try-restart, ...     | any               | kept    | `systemctl restart`: flows carry over  |
/// | stop                          | any               | removed | `systemctl stop`: the host as before   |
/// | none or start                 | success           | removed | exited on its own; nothing restarts it |
/// | none or start                 | anything else     | kept    | crashed or killed by the watchdog:     |
/// |                               |                   |         | Restart=on-failure starts it again     |
///
/// When systemd cannot be asked, the job counts as none.
public struct StopPostDecision: Equatable, Sendable {
    public var removeRules: Bool
    public var reason: String

    public static func decide(pendingJob: String?, serviceResult: String?) -> StopPostDecision {
        switch pendingJob {
        case "restart", "try-restart", "reload-or-restart", "try-reload-or-restart":
            return StopPostDecision(removeRules: false, reason: "systemd is restarting the unit (\(pendingJob!) job)")
        case "stop":
            return StopPostDecision(removeRules: true, reason: "the unit is being stopped (stop job)")
        default:
            let result = serviceResult ?? "success"
            if result == "success" {
                return StopPostDecision(removeRules: true, reason: "the daemon exited cleanly and no restart is pending")
            }
            return StopPostDecision(removeRules: false, reason: "the daemon failed (SERVICE_RESULT=\(result)); Restart=on-failure starts it again")
        }
    }
}
