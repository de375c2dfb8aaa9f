import RedirectCore

/// Puts the daemon's firewall rules in place and takes them away: `IptablesRuleInstaller`
/// on a host, `RecordingRuleInstaller` in tests.
public protocol RuleInstaller: AnyObject {
    /// Throws a clear error when the programs the installer needs are missing.
    func checkAvailable(for configuration: RuleSetConfiguration) throws(KernelError)
    /// Installs or replaces the rules, idempotently: the daemon's chains are flushed and
    /// refilled in one transaction per family, and each jump to them is added only if absent.
    /// A family no rule applies to has the daemon's chains removed.
    func install(_ configuration: RuleSetConfiguration) throws(KernelError)
    /// Removes every jump, rule and chain of the daemon's, in both families.
    func remove() throws(KernelError)
    /// What of `configuration`'s rules is not in the kernel (one phrase each; empty: all in
    /// place). Cheap enough for once a second. With `orNftTable`, an nftables table
    /// `inet nfq_redirect` (what `nfq-redirect rules --format nft` prints, loaded by the
    /// operator) counts as the rules being there.
    func missing(_ configuration: RuleSetConfiguration, orNftTable: Bool) throws(KernelError) -> [String]
}
