/// The rules the datapath applies, as one immutable snapshot: the policy from the
/// configuration and the interface addresses from rtnetlink. A reload or an address change
/// builds a new snapshot; datapath threads pick it up at their next batch, so a batch never
/// sees half of a change.
public final class DatapathRules: Sendable {
    public let policy: RedirectPolicy
    public let addresses: RedirectAddressBook

    public init(policy: RedirectPolicy, addresses: RedirectAddressBook) {
        self.policy = policy
        self.addresses = addresses
    }

    public func replacingAddresses(_ addresses: RedirectAddressBook) -> DatapathRules {
        DatapathRules(policy: policy, addresses: addresses)
    }

    public func replacingPolicy(_ policy: RedirectPolicy) -> DatapathRules {
        DatapathRules(policy: policy, addresses: addresses)
    }
}
