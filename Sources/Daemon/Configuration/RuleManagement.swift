/// `[rules]`: who owns the daemon's firewall rules.
public struct RuleManagement: Equatable, Sendable {
    /// true: the daemon installs its rules, puts back within a second what a firewall reload
    /// removed, and removes them on a stop for good. false: the operator loads them
    /// (`nfq-redirect rules` prints them); the daemon only checks and warns when they are missing.
    public var manage: Bool = true

    public init() {}
}
