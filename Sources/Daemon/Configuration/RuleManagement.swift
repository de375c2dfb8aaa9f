/// `[rules]`: who owns the daemon's firewall rules, and what is left when the service gives up.
public struct RuleManagement: Equatable, Sendable {
    /// What `nfq-redirect rules --remove --unless-restarting` and `--gave-up` (the unit's
    /// ExecStopPost= and its OnFailure= unit) do when systemd will not start the daemon again
    /// after a failure: the start limit was hit, or the config is refused (exit status 2).
    public enum OnGiveUp: String, Equatable, Sendable, CaseIterable {
        /// The rules go: traffic passes unredirected (no black hole). The default.
        case remove
        /// The rules stay: redirected ports stay blocked (fail-closed) until an operator acts.
        case keep
    }

    /// true: the daemon installs its rules, puts back within a second what a firewall reload
    /// removed, and removes them on a stop for good. false: the operator loads them
    /// (`nfq-redirect rules` prints them); the daemon only checks and warns when they are missing.
    public var manage: Bool = true
    public var onGiveUp: OnGiveUp = .remove

    public init() {}
}
