/// What `ExecStopPost=` (`nfq-redirect rules --remove --unless-restarting UNIT`) does with the
/// rules the daemon left behind when its unit stopped. Under systemd the daemon always exits
/// keeping its rules; this is the one place that knows whether systemd will start it again:
///
/// | systemd's job for the unit    | `$SERVICE_RESULT` | `$EXIT_STATUS` | rules   | why                                   |
/// | ----------------------------- | ----------------- | -------------- | ------- | ------------------------------------- |
/// | restart, try-restart, ...     | any               | any            | kept    | `systemctl restart`: flows carry over  |
/// | stop                          | any               | any            | removed | `systemctl stop`: the host as before   |
/// | none or start                 | success           | any            | removed | exited on its own; nothing restarts it |
/// | none or start                 | exit-code         | 2              | removed | config refused: RestartPreventExitStatus=2, |
/// |                               |                   |                | (kept with on_give_up = keep) | systemd gives up |
/// | none or start                 | anything else     | other          | kept    | crashed or killed by the watchdog:     |
/// |                               |                   |                |         | Restart=on-failure starts it again     |
///
/// When systemd cannot be asked, the job counts as none. When the restarts themselves fail
/// until the start limit is hit, no ExecStopPost says so: the unit's `OnFailure=` unit runs
/// `nfq-redirect rules --remove --gave-up UNIT` (`GiveUpDecision`).
public struct StopPostDecision: Equatable, Sendable {
    public var removeRules: Bool
    public var reason: String

    public static func decide(
        pendingJob: String?, serviceResult: String?, exitStatus: String? = nil, onGiveUp: RuleManagement.OnGiveUp = .remove
    ) -> StopPostDecision {
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
            if result == "exit-code" && exitStatus == "2" {
                let why = "the daemon refused its configuration (exit status 2) and systemd will not restart it"
                return onGiveUp == .remove
                    ? StopPostDecision(removeRules: true, reason: "\(why); traffic passes unredirected")
                    : StopPostDecision(removeRules: false, reason: "\(why); [rules] on_give_up = keep: redirected ports stay blocked")
            }
            return StopPostDecision(removeRules: false, reason: "the daemon failed (SERVICE_RESULT=\(result)); Restart=on-failure starts it again")
        }
    }
}

/// What the unit's `OnFailure=` unit (`nfq-redirect rules --remove --gave-up UNIT`) does:
/// systemd activates it once the unit is failed for good (the start limit hit, or a failure
/// Restart= does not restart), never between automatic restarts. The rules of a daemon that
/// will not come back would hold redirected traffic in a queue nobody reads: they go, unless
/// the operator chose fail-closed even then.
public struct GiveUpDecision: Equatable, Sendable {
    public var removeRules: Bool
    public var message: String

    /// `unitState` is `systemctl is-active UNIT` (nil: unknown); `result` is
    /// `$MONITOR_SERVICE_RESULT` (systemd 251+), `rulesPresent` whether any chain of ours is in the kernel.
    public static func decide(
        unit: String, unitState: String?, result: String?, rulesPresent: Bool, onGiveUp: RuleManagement.OnGiveUp
    ) -> GiveUpDecision {
        let why = result.map { " (\($0))" } ?? ""
        if let unitState, ["active", "activating", "reloading"].contains(unitState) {
            return GiveUpDecision(removeRules: false, message: "\(unit) is \(unitState) again: its rules stay")
        }
        guard rulesPresent else {
            return GiveUpDecision(removeRules: false, message: "\(unit) gave up\(why); none of its rules are in place, traffic passes unredirected")
        }
        if onGiveUp == .keep {
            return GiveUpDecision(
                removeRules: false,
                message:
                    "\(unit) gave up\(why); rules kept ([rules] on_give_up = keep): redirected ports stay blocked until it runs again or `nfq-redirect rules --remove`"
            )
        }
        return GiveUpDecision(removeRules: true, message: "\(unit) gave up\(why); rules removed: traffic to redirected ports now passes unredirected")
    }
}
