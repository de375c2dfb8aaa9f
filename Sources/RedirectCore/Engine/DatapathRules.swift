/// The rules the datapath applies, as one immutable snapshot: the policy from the
/// configuration and the interface addresses from rtnetlink. A reload or an address change
/// builds a new snapshot; datapath threads pick it up at their next batch, so a batch never
/// sees half of a change.
public final class DatapathRules: Sendable {
    public let policy: RedirectPolicy
    public let addresses: RedirectAddressBook
    /// Kernel-nat mode's marks; nil in the userspace mode, where the daemon rewrites packets itself.
    public let kernelNAT: KernelNATMarks?

    public init(policy: RedirectPolicy, addresses: RedirectAddressBook, kernelNAT: KernelNATMarks? = nil) {
        self.policy = policy
        self.addresses = addresses
        self.kernelNAT = kernelNAT
    }

    public func replacingAddresses(_ addresses: RedirectAddressBook) -> DatapathRules {
        DatapathRules(policy: policy, addresses: addresses, kernelNAT: kernelNAT)
    }

    public func replacingPolicy(_ policy: RedirectPolicy, kernelNAT: KernelNATMarks? = nil) -> DatapathRules {
        DatapathRules(policy: policy, addresses: addresses, kernelNAT: kernelNAT)
    }
}
